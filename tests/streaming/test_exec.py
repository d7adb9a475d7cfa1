"""kubectl exec/attach and the Python client's stream() through the API server to the kubelet API, over WebSocket
(kubectl 1.32's default, v5) and SPDY (kubectl's fallback), with exit codes, stdin EOF, and a real terminal."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import fcntl
import os
import pty
import struct
import termios
import time

import pytest

from streamenv import Env, needs_tools, unique

pytestmark = [needs_tools, pytest.mark.asyncio(loop_scope="module")]

SPDY = {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}


@pytest.fixture(scope="module", params=["websocket", "spdy"])
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


async def test_exec_output_exit_code_and_stdin(env: Env, transport: str) -> None:
    name = unique("exec")
    await env.pod(name, {"main": ["sleep", "3600"]})
    kenv = env.kubectl_env(**(SPDY if transport == "spdy" else {}))
    r = await env.kubectl("exec", name, "--", "sh", "-c", "echo out; echo err >&2; hostname >/dev/null", env=kenv)
    assert (r.code, r.stdout, r.stderr) == (0, "out\n", "err\n")
    r = await env.kubectl("exec", name, "--", "sh", "-c", "exit 3", env=kenv)
    assert r.code == 3, r
    r = await env.kubectl("exec", "-i", name, "--", "cat", input="hello from stdin\nsecond line\n", env=kenv)
    assert (r.code, r.stdout) == (0, "hello from stdin\nsecond line\n"), r
    big = "x" * 200_000 + "\n"
    r = await env.kubectl("exec", "-i", name, "--", "wc", "-c", input=big, env=kenv)
    assert r.stdout.strip() == str(len(big)), r
    # stdin still flowing when the process exits: the exit code arrives all the same. (containerd itself never
    # reports the exit of an exec that leaves more than a pipe buffer of stdin unread, so less input there.)
    unread = 3_000_000 if env.kind == "process" else 30_000
    r = await env.kubectl("exec", "-i", name, "--", "sh", "-c", "head -c 10 >/dev/null; exit 7",
                          input="y" * unread, env=kenv)
    assert r.code == 7, r
    echo = "".join(f"{i:07d}\n" for i in range(150_000))     # 1.2 MB in and out at once
    r = await env.kubectl("exec", "-i", name, "--", "cat", input=echo, env=kenv)
    assert r.code == 0 and r.stdout == echo, (r.code, len(r.stdout), r.stderr)
    r = await env.kubectl("exec", name, "--", "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x", env=kenv)
    assert r.code == 0 and len(r.stdout) == 3_000_000 and set(r.stdout) == {"x"}, (r.code, len(r.stdout), r.stderr)


async def test_exec_errors(env: Env) -> None:
    name = unique("errs")
    await env.pod(name, {"a": ["sleep", "3600"], "b": ["sleep", "3600"]})
    r = await env.kubectl("exec", name, "-c", "nope", "--", "true")
    assert r.code != 0 and f"container nope is not valid for pod {name}" in r.stderr, r
    r = await env.kubectl("exec", name, "-c", "b", "--", "/no/such/binary")
    assert r.code != 0 and r.stderr, r
    r = await env.kubectl("exec", "missing-pod", "--", "true")
    assert r.code == 1 and 'pods "missing-pod" not found' in r.stderr, r


class Terminal:
    """kubectl on a real pseudo-terminal (its controlling tty), as a user at a terminal runs it."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int) -> None:
        self.proc = proc
        self.master = master
        self.output = bytearray()
        self._data = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(master, self._readable)

    @classmethod
    async def start(cls, args: list[str], env: dict[str, str], rows: int, cols: int) -> "Terminal":
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

        def controlling_tty() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        proc = await asyncio.create_subprocess_exec(*args, stdin=slave, stdout=slave, stderr=slave, env=env,
                                                    preexec_fn=controlling_tty)
        os.close(slave)
        return cls(proc, master)

    def _readable(self) -> None:
        try:
            self.output.extend(os.read(self.master, 65536))
        except OSError:
            self._loop.remove_reader(self.master)
        self._data.set()

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    async def expect(self, text: bytes, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, f"never saw {text!r} in {bytes(self.output)!r}"
            self._data.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._data.wait(), 0.5)

    async def close(self) -> None:
        self._loop.remove_reader(self.master)
        os.close(self.master)
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def test_exec_tty_with_resize(env: Env, transport: str) -> None:
    """`kubectl exec -it` under a real pseudo-terminal: the size reaches the process, and so does a resize."""
    name = unique("tty")
    await env.pod(name, {"main": ["sleep", "3600"]})
    term = await Terminal.start(["kubectl", "exec", "-it", name, "--", "sh"],
                                env.kubectl_env(TERM="dumb", **(SPDY if transport == "spdy" else {})), 31, 97)
    try:
        term.type(b"stty size; echo ma''rk1\n")
        await term.expect(b"31 97")
        await term.expect(b"mark1")
        term.resize(42, 120)
        await asyncio.sleep(0.3)           # kubectl notices SIGWINCH and sends the size on the resize channel
        term.type(b"stty size; echo ma''rk2\n")
        await term.expect(b"42 120")
        await term.expect(b"mark2")
        term.type(b"exit 4\n")
        assert await asyncio.wait_for(term.proc.wait(), 10) == 4
    finally:
        await term.close()


async def test_attach_tty(env: Env) -> None:
    """`kubectl attach -it` to a container whose main process is a shell on a terminal."""
    name = unique("atty")
    await env.pod(name, {"main": ["sh"]}, stdin=True, tty=True)
    term = await Terminal.start(["kubectl", "attach", "-it", name], env.kubectl_env(TERM="dumb"), 25, 81)
    try:
        await term.expect(b"If you don't see a command prompt")
        # kubectl sends the size plus one, then the size (to make the shell redraw): wait for the second to land
        for _ in range(20):
            term.type(b"stty size; echo at''tached\n")
            await term.expect(b"attached")
            if b"25 81" in term.output:
                break
            term.output.clear()
            await asyncio.sleep(0.2)
        assert b"25 81" in term.output, bytes(term.output)
        term.type(b"exit\n")
        assert await asyncio.wait_for(term.proc.wait(), 10) == 0
    finally:
        await term.close()


async def test_attach(env: Env, transport: str) -> None:
    name = unique("attach")
    await env.pod(name, {"main": ["sh", "-c", "read line; echo got $line; sleep 0.2"]}, stdin=True)
    kenv = env.kubectl_env(**(SPDY if transport == "spdy" else {}))
    r = await env.kubectl("attach", "-i", name, "-c", "main", input="hello\n", env=kenv)
    assert "got hello" in r.stdout, r


async def test_python_client_stream(env: Env) -> None:
    from kubernetes import client, config
    from kubernetes.stream import stream
    name = unique("pyexec")
    await env.pod(name, {"main": ["sleep", "3600"]})
    api = client.CoreV1Api(config.new_client_from_config(str(env.kubeconfig)))

    def run() -> tuple[str, int | None]:
        out = stream(api.connect_get_namespaced_pod_exec, name, "default", command=["sh", "-c", "echo py; exit 2"],
                     stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
        out.run_forever(timeout=10)
        code = out.returncode            # before read_all(), which drops every channel's buffer
        return out.read_all(), code

    def interactive() -> str:
        ws = stream(api.connect_get_namespaced_pod_exec, name, "default", command=["cat"], stderr=True, stdin=True,
                    stdout=True, tty=False, _preload_content=False)
        ws.write_stdin("ping\n")
        got = ""
        deadline = time.monotonic() + 10
        while "ping" not in got and time.monotonic() < deadline:
            ws.update(timeout=1)
            got += ws.read_stdout() if ws.peek_stdout() else ""
        ws.close()
        return got

    text, code = await asyncio.to_thread(run)
    assert text == "py\n" and code == 2
    assert "ping" in await asyncio.to_thread(interactive)


async def test_kubectl_cp_both_ways(env: Env, tmp_path) -> None:
    """`kubectl cp` is tar over exec (stdin one way, stdout the other)."""
    name = unique("cp")
    await env.pod(name, {"main": ["sleep", "3600"]})
    src = tmp_path / "up.txt"
    src.write_bytes(b"copied in\n" * 5000)
    r = await env.kubectl("cp", str(src), f"{name}:/tmp/up.txt")
    assert r.code == 0, r
    r = await env.kubectl("exec", name, "--", "md5sum", "/tmp/up.txt")
    assert r.stdout.split()[0] == hashlib.md5(src.read_bytes()).hexdigest(), r
    r = await env.kubectl("cp", f"{name}:/tmp/up.txt", str(tmp_path / "down.txt"))
    assert r.code == 0, r
    assert (tmp_path / "down.txt").read_bytes() == src.read_bytes()


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", "v3.channel.k8s.io",
                                      "channel.k8s.io", "base64.channel.k8s.io"])
async def test_older_websocket_protocols(env: Env, protocol: str) -> None:
    """Every channel protocol the kubelet offers, straight from a WebSocket client through the API server."""
    import base64
    import json
    import ssl

    import aiohttp
    name = unique("ws")
    await env.pod(name, {"main": ["sleep", "3600"]})
    ctx = ssl.create_default_context(cafile=str(env.pki.ca_cert))
    ctx.load_cert_chain(env.pki.admin_cert, env.pki.admin_key)
    url = (f"https://127.0.0.1:{env.api.config.port}/api/v1/namespaces/default/pods/{name}/exec"
           "?command=sh&command=-c&command=read+x%3B+echo+$x%3B+echo+e>%262%3B+exit+5"
           "&stdin=true&stdout=true&stderr=true")
    b64 = "base64" in protocol
    out: dict[int, bytes] = {}
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url, protocols=(protocol,), ssl=ctx) as ws:
            assert ws.protocol == protocol
            if b64:
                await ws.send_str("0" + base64.b64encode(b"hi\n").decode())
            else:
                await ws.send_bytes(b"\x00hi\n")
            async for msg in ws:
                data = msg.data
                if b64:
                    channel, payload = int(data[0]), base64.b64decode(data[1:])
                else:
                    channel, payload = data[0], data[1:]
                out[channel] = out.get(channel, b"") + payload
    assert out.get(1) == b"hi\n" and out.get(2) == b"e\n", out
    if protocol.startswith("v4"):
        status = json.loads(out[3])
        assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"] == [
            {"reason": "ExitCode", "message": "5"}]
    else:
        assert b"exit code 5" in out[3]


async def test_node_proxy_to_kubelet(env: Env) -> None:
    r = await env.kubectl("get", "--raw", "/api/v1/nodes/stream-node/proxy/healthz")
    assert (r.code, r.stdout) == (0, "ok"), r
