"""Starts otpd detached and times its cold start: from exec to the first
200 from /healthz, polling every 0.2 ms over a raw socket (a curl per
poll would cost more than the start itself).

Usage: start_otpd.py BINARY PORT STDERR_FILE   (env passes through)
Prints "<pid> <ms>" and leaves otpd running for run.sh to stop.
"""

import os
import socket
import subprocess
import sys
import time

binary, port, err_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
request = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"

started = time.perf_counter()
with open(err_file, "wb") as err:
    proc = subprocess.Popen(
        [binary],
        stdout=subprocess.DEVNULL,
        stderr=err,
        start_new_session=True,
    )
deadline = started + 10
while True:
    if proc.poll() is not None:
        sys.exit(f"otpd exited with {proc.returncode}; see {err_file}")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(request)
            reply = s.recv(64)
        if reply.startswith(b"HTTP/1.1 200"):
            break
    except OSError:
        pass
    if time.perf_counter() > deadline:
        proc.kill()
        sys.exit(f"otpd on port {port} was not ready within 10 s; see {err_file}")
    time.sleep(0.0002)
ready_ms = (time.perf_counter() - started) * 1000
print(proc.pid, f"{ready_ms:.1f}")
