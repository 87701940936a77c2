#!/usr/bin/env python3
"""The floor under any replicated write on this machine, measured where the data lives.

    benches/floor.py DIR

- fsync: a 256-byte append + fdatasync to a file in DIR (the scratch disk both systems
  use), 2,000 times: p50 / p99 in ms. A Raft write needs at least one on the leader and one
  on a follower, in parallel, so one client's PUT cannot beat ~1 of these.
- loopback: a 64-byte TCP ping-pong over 127.0.0.1, 5,000 times: p50 / p99 in ms. A PUT
  needs at least two of these (client-leader, leader-follower).
"""
import os
import socket
import statistics
import sys
import threading
import time

d = sys.argv[1]
path = os.path.join(d, "floor.bin")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
buf = b"x" * 256
times = []
for _ in range(2000):
    t = time.perf_counter()
    os.write(fd, buf)
    os.fdatasync(fd)
    times.append(time.perf_counter() - t)
os.close(fd)
os.unlink(path)


def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000


print(f"fsync floor: 256 B append + fdatasync p50 {q(times, 0.5):.3f} ms, p99 {q(times, 0.99):.3f} ms")

srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)


def echo():
    c, _ = srv.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        b = c.recv(64)
        if not b:
            return
        c.sendall(b)


threading.Thread(target=echo, daemon=True).start()
cl = socket.create_connection(srv.getsockname())
cl.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
rtts = []
for _ in range(5000):
    t = time.perf_counter()
    cl.sendall(b"y" * 64)
    got = 0
    while got < 64:
        got += len(cl.recv(64 - got))
    rtts.append(time.perf_counter() - t)
cl.close()
print(f"loopback round trip: 64 B TCP ping-pong p50 {q(rtts, 0.5):.3f} ms, p99 {q(rtts, 0.99):.3f} ms")
