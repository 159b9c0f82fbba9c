# compat: once
"""The Docker SDK for Python (Debian's python3-docker) the way testcontainers-style code uses it.

Prints a transcript like the shell scenarios: each step, then what it returned.
"""
import io
import os
import socket
import tarfile
import time

import docker

P = os.environ["P"]
REG = os.environ["REG"]


def step(name, value=None):
    print(f"$ {name}")
    if value is not None:
        print(value)


def err(fn):
    try:
        fn()
        return "no error"
    except docker.errors.APIError as e:
        return f"{type(e).__name__} {e.status_code} {e.explanation}"


client = docker.from_env(version="auto")
api = client.api
step("ping", client.ping())
v = client.version()
step("version keys", sorted(k for k in ("ApiVersion", "Os", "Arch", "Version", "MinAPIVersion") if k in v))
step("info OSType", client.info()["OSType"])
# the response headers real clients read
r = api._get(api._url("/_ping"))
step("ping headers", [h for h in ("Api-Version", "Ostype", "Docker-Experimental") if h in r.headers])
r = api._get(api._url("/containers/nothere/json"))
step("missing container", (r.status_code, r.headers.get("Content-Type"), r.json()))

# pull from the local registry (after pushing busybox there with the SDK)
img = client.images.get("busybox")
img.tag(f"{REG}/{P}/sdk", "1")
out = [l.get("status", "") for l in api.push(f"{REG}/{P}/sdk", tag="1", stream=True, decode=True) if "error" in l or "Digest" in l.get("aux", {})]
step("push stream ends with a digest", len(out) >= 1 and all("error" not in l for l in out))
client.images.remove(f"{REG}/{P}/sdk:1")
pulled = client.images.pull(f"{REG}/{P}/sdk", tag="1")
step("pull tags", [t for t in pulled.tags if t.startswith(f"{REG}/{P}/")])
step("pull missing", err(lambda: client.images.pull(f"{REG}/{P}/nothere", tag="1")))

# a network and a volume, then a container created with HostConfig and NetworkingConfig
net = client.networks.create(f"{P}-net", labels={"sdk": "yes"})
vol = client.volumes.create(f"{P}-vol", labels={"sdk": "yes"})
step("network", (net.name, net.attrs["Driver"], net.attrs["Labels"]))
step("volume", (vol.name, vol.attrs["Driver"], vol.attrs["Labels"]))
hc = api.create_host_config(
    binds={vol.name: {"bind": "/data", "mode": "rw"}},
    port_bindings={80: ("127.0.0.1", None)},
    restart_policy={"Name": "no"},
    mem_limit="64m",
)
nc = api.create_networking_config({net.name: api.create_endpoint_config(aliases=["sdk-alias"])})
c = api.create_container(
    "busybox",
    command=["sh", "-c", "echo started; echo to-err >&2; mkdir -p /www; echo sdk > /www/i; httpd -f -p 80 -h /www"],
    name=f"{P}-web",
    host_config=hc,
    networking_config=nc,
    environment={"A": "1"},
    labels={"sdk": "yes"},
    ports=[80],
)
step("create warnings", c.get("Warnings") or [])
api.start(c["Id"])
ins = api.inspect_container(c["Id"])
step("inspect", (ins["Name"], ins["State"]["Status"], ins["HostConfig"]["Memory"], sorted(ins["NetworkSettings"]["Networks"])))
step("aliases", [a for a in ins["NetworkSettings"]["Networks"][net.name]["Aliases"] or [] if a == "sdk-alias"])
port = api.port(c["Id"], 80)
step("port binding host ip", port[0]["HostIp"])
for _ in range(100):
    lg = api.logs(c["Id"], stdout=True, stderr=True)
    if b"to-err" in lg:
        break
    time.sleep(0.1)
step("logs stdout only", api.logs(c["Id"], stdout=True, stderr=False))
step("logs stderr only", api.logs(c["Id"], stdout=False, stderr=True))
ctr = client.containers.get(f"{P}-web")
step("containers.list by label", [x.name for x in client.containers.list(filters={"label": "sdk=yes"})])

# exec with demux
e = api.exec_create(c["Id"], ["sh", "-c", "echo out; echo err >&2; exit 3"])
step("exec demux", api.exec_start(e["Id"], demux=True))
step("exec exit code", api.exec_inspect(e["Id"])["ExitCode"])
r = ctr.exec_run(["cat", "/www/i"])
step("exec_run", (r.exit_code, r.output))
r = ctr.exec_run(["sh", "-c", "read x; echo got $x"], stdin=True, socket=True)
sock = r.output._sock if hasattr(r.output, "_sock") else r.output
sock.sendall(b"line\n")
data = b""
while True:
    chunk = sock.recv(4096)
    if not chunk:
        break
    data += chunk
    if b"got" in data:
        break
step("exec socket (multiplexed frame + payload)", data)

# archives
tar = io.BytesIO()
with tarfile.open(fileobj=tar, mode="w") as t:
    body = b"put by the sdk\n"
    ti = tarfile.TarInfo("put.txt")
    ti.size = len(body)
    ti.mode = 0o640
    t.addfile(ti, io.BytesIO(body))
step("put_archive", api.put_archive(c["Id"], "/data", tar.getvalue()))
strm, stat = api.get_archive(c["Id"], "/data/put.txt")
raw = b"".join(strm)
with tarfile.open(fileobj=io.BytesIO(raw)) as t:
    m = t.getmembers()[0]
    step("get_archive", (stat["name"], stat["size"], oct(stat["mode"] & 0o777), m.name, t.extractfile(m).read()))
step("get_archive missing", err(lambda: api.get_archive(c["Id"], "/nothere")))
step("put_archive to a missing dir", err(lambda: api.put_archive(c["Id"], "/nothere", tar.getvalue())))

# attach socket on a fresh container, before start (testcontainers' log consumers do this)
a = api.create_container("busybox", command=["sh", "-c", "echo attached-out; echo attached-err >&2"], name=f"{P}-att")
s = api.attach_socket(a["Id"], params={"stdout": 1, "stderr": 1, "stream": 1})
api.start(a["Id"])
sk = s._sock
buf = b""
while True:
    chunk = sk.recv(4096)
    if not chunk:
        break
    buf += chunk
frames = []
while len(buf) >= 8:
    n = int.from_bytes(buf[4:8], "big")
    frames.append((buf[0], buf[8 : 8 + n]))
    buf = buf[8 + n :]
step("attach frames", sorted(frames))
step("wait", api.wait(a["Id"]))

# events, bounded by until
since = int(time.time()) - 1
client.containers.run("busybox", ["true"], name=f"{P}-ev", remove=True)
until = int(time.time()) + 1
evs = [(e["Type"], e["Action"]) for e in client.events(since=since, until=until, decode=True, filters={"container": f"{P}-ev"})]
step("events", evs)

# stop, wait, remove, clean up
api.stop(c["Id"], timeout=1)
step("wait after stop", api.wait(c["Id"])["StatusCode"])
api.remove_container(c["Id"], v=True)
api.remove_container(a["Id"])
step("inspect removed", err(lambda: api.inspect_container(c["Id"])))
net.remove()
vol.remove()
step("volume gone", err(lambda: client.volumes.get(f"{P}-vol")))
client.images.remove(f"{REG}/{P}/sdk:1")
# (BuilderSize is deprecated since API 1.42: dockerd 20.10 still sends it)
step("df keys", sorted(k for k in client.df().keys() if k != "BuilderSize"))
