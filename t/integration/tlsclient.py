"""A Python TLS client over memory BIOs, for tests that must control the
bytes on the wire (a PROXY header before the ClientHello, a hello cut in
pieces, records sent one byte at a time)."""
import ssl


def first_flight(ctx, sni):
    """The client's first flight (its ClientHello), and the SSLObject with
    its BIOs (incoming, outgoing) to carry on with."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read(), obj, inc, out


def bio_handshake(sock, obj, inc, out):
    """Finish obj's handshake over the plain socket; returns the bytes of
    the client's last flight, still unsent (so a caller may add to them)."""
    while True:
        try:
            obj.do_handshake()
            return out.read()
        except ssl.SSLWantReadError:
            pending = out.read()
            if pending:
                sock.sendall(pending)
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed during the handshake")
            inc.write(data)
