// The lab's helper processes (echo servers, the terminating proxy), as a small python3 program
// written into the lab's state directory at `up`. Real kernel sockets: MPTCP servers listen with
// IPPROTO_MPTCP (262). Each connection is logged as one JSON line when it closes, so tests can
// tell what the server received.

enum LabDaemon {
    static let fileName = "labd.py"

    static let source = #"""
#!/usr/bin/env python3
# mptracebox lab daemon: echo servers and a transparent terminating TCP proxy.
import argparse, errno, json, os, select, signal, socket, struct, sys, threading

IPPROTO_MPTCP = 262
SOL_MPTCP = 284
MPTCP_INFO = 1
SO_ORIGINAL_DST = 80

# Do not keep the launcher's pipes (or anything else) open.
os.closerange(3, 1024)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
lock = threading.Lock()

def log(path, record):
    line = json.dumps(record, sort_keys=True) + "\n"
    with lock:
        with open(path, "a") as f:
            f.write(line)

def ready(path):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.rename(tmp, path)

def is_mptcp(conn):
    # On a fallback connection the kernel refuses MPTCP_INFO.
    try:
        conn.getsockopt(SOL_MPTCP, MPTCP_INFO, 256)
        return True
    except OSError:
        return False

def serve_conn(conn, peer, args):
    local = conn.getsockname()
    rec = {"event": "close", "port": args.port, "proto": args.proto,
           "peer": peer[0], "peer_port": peer[1], "local": local[0], "bytes_in": 0, "bytes_out": 0}
    if args.proto == "mptcp":
        rec["mptcp"] = is_mptcp(conn)
    log(args.log, dict(rec, event="open"))
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            rec["bytes_in"] += len(data)
            if args.echo:
                conn.sendall(data)
                rec["bytes_out"] += len(data)
    except OSError as e:
        rec["error"] = errno.errorcode.get(e.errno, str(e))
    if args.proto == "mptcp":
        rec["mptcp_at_close"] = is_mptcp(conn)
    try:
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    conn.close()
    log(args.log, rec)

def serve(args):
    proto = IPPROTO_MPTCP if args.proto == "mptcp" else socket.IPPROTO_TCP
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, proto)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", args.port))
    s.listen(4096)
    ready(args.ready)
    while True:
        conn, peer = s.accept()
        threading.Thread(target=serve_conn, args=(conn, peer, args), daemon=True).start()

def original_dst(conn, family):
    if family == socket.AF_INET:
        raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        port, = struct.unpack("!H", raw[2:4])
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    raw = conn.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)
    port, = struct.unpack("!H", raw[2:4])
    return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port

def pump(src, dst, counter, key):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
            counter[key] += len(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass

def proxy_conn(conn, peer, family, args):
    rec = {"event": "proxied", "client": peer[0], "client_port": peer[1], "up": 0, "down": 0}
    try:
        host, port = original_dst(conn, family)
        rec.update(dst=host, dst_port=port)
        up = socket.create_connection((host, port), timeout=10)
        up.settimeout(None)
    except OSError as e:
        rec["error"] = str(e)
        conn.close()
        log(args.log, rec)
        return
    t = threading.Thread(target=pump, args=(up, conn, rec, "down"), daemon=True)
    t.start()
    pump(conn, up, rec, "up")
    t.join()
    conn.close()
    up.close()
    log(args.log, rec)

def proxy(args):
    listeners = {}
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, args.port))
        s.listen(1024)
        listeners[s] = family
    ready(args.ready)
    while True:
        readable, _, _ = select.select(list(listeners), [], [])
        for s in readable:
            conn, peer = s.accept()
            threading.Thread(target=proxy_conn, args=(conn, peer, listeners[s], args), daemon=True).start()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["serve", "proxy"])
    ap.add_argument("--proto", choices=["mptcp", "tcp"], default="tcp")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--echo", type=int, default=1)
    ap.add_argument("--log", required=True)
    ap.add_argument("--ready", required=True)
    args = ap.parse_args()
    serve(args) if args.mode == "serve" else proxy(args)

main()
"""#
}
