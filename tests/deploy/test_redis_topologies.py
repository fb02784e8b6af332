"""REDIS_URL over unix:// and rediss://, and Redis Sentinel with a real failover, each under real gunicorn."""

from __future__ import annotations

import datetime
import ipaddress
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from redis import exceptions as redis_errors
from support.gunicorn import Gunicorn
from support.http_json import get_json
from support.procs import wait_until
from support.redis_sentinel import sentinel_setup
from support.redis_server import RedisServer
from support.service import bearer, dev_token, publish, service_env
from support.sse_client import SSEClient

from .conftest import connected_info, messages, next_message

CHAN = "channel:topology"


def round_trip(base: str, sub: str) -> None:
    """A stream on `base` receives what is published there: the bus works end to end."""
    token = dev_token(base, sub, ["channel:*"], ["publish:events"])
    with SSEClient(f"{base}/stream?channels={CHAN}", bearer(token), timeout=5) as client:
        assert client.status == 200, client.body()
        connected_info(client)
        ids = [publish(base, token, CHAN, {"n": n}) for n in range(3)]
        assert [f.id for f in messages(client, 3, 3)] == ids
    assert get_json(f"{base}/readyz")[0] == 200


def test_unix_socket_redis_url(make_redis, tmp_path: Path):
    sock = tmp_path / "redis.sock"
    redis = make_redis(args=["--unixsocket", str(sock), "--unixsocketperm", "700"])
    with Gunicorn(workers=2, env=service_env(f"unix://{sock}?db=0"), workdir=tmp_path / "g") as server:
        round_trip(server.base_url, "unix-user")
        with redis.client() as admin:
            clients = admin.client_list()
    # Every connection of the service (commands, and the live feed of both workers) came over the socket.
    service = [c for c in clients if c["cmd"] != "client|list"]
    assert len(service) >= 2 and all(c["addr"].startswith(str(sock)) for c in service), clients


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, issuer: x509.Name | None, key, signer, ca: bool) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("chatgenius test CA", None, ca_key, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build("127.0.0.1", ca.subject, key, ca_key, False)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


def test_rediss_url_with_a_private_ca(make_redis, tmp_path: Path):
    from support.procs import free_port

    ca, cert, key = _tls_files(tmp_path)
    tls_port = free_port()
    redis = make_redis(args=[
        "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
    ])
    url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}&ssl_cert_reqs=required"
    with Gunicorn(workers=1, env=service_env(url), workdir=tmp_path / "g") as server:
        round_trip(server.base_url, "tls-user")
        with redis.client() as admin:
            ports = {int(c["laddr"].rpartition(":")[2]) for c in admin.client_list() if c.get("cmd") != "client|list"}
    assert ports == {tls_port}, "the service should talk to Redis over TLS only"


# -- Sentinel ------------------------------------------------------------------------------------
@pytest.fixture
def sentinel_service(tmp_path: Path) -> Iterator[tuple[object, Gunicorn]]:
    with ExitStack() as stack:
        setup = stack.enter_context(sentinel_setup("chatgenius"))
        env = service_env(None, REDIS_SENTINELS=f"127.0.0.1:{setup.sentinel.port}", REDIS_SENTINEL_MASTER="chatgenius")
        server = stack.enter_context(Gunicorn(workers=1, env=env, workdir=tmp_path / "g"))
        yield setup, server


def _linked_replica(redis: RedisServer) -> bool:
    """The server is a replica with its link up. A connection the server drops while it switches
    role (it closes its clients on demotion) is "not yet", not a failure."""
    try:
        with redis.client() as c:
            info = c.info("replication")
    except redis_errors.ConnectionError:
        return False
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


def _seq(redis: RedisServer) -> int:
    with redis.client() as c:
        return int(c.get("cg:seq") or 0)


@pytest.mark.slow
def test_sentinel_failover_reconnects_and_a_lost_tail_is_reset(sentinel_service):
    setup, server = sentinel_service
    base = server.base_url
    token = dev_token(base, "sentinel-user", ["channel:*"], ["publish:events"])
    auth = bearer(token)
    with SSEClient(f"{base}/stream?channels={CHAN}", auth, timeout=5) as before:
        assert before.status == 200
        connected_info(before)
        kept = [publish(base, token, CHAN, {"n": n}) for n in range(3)]
        assert [f.id for f in messages(before, 3, 3)] == kept
        head = _seq(setup.master)
        wait_until(lambda: _seq(setup.replica) == head, 5, message="replica caught up")

        # The replica stops hearing the master; the next events exist on the master only.
        setup.replica.pause()
        with setup.master.client() as admin:
            admin.execute_command("CLIENT", "KILL", "TYPE", "replica")
        lost = [publish(base, token, CHAN, {"n": n}) for n in range(3, 5)]
        assert [f.id for f in messages(before, 2, 3)] == lost  # delivered live, then lost with the master
        setup.master.kill()
        setup.replica.resume()

        ended = before.read_until(lambda f: f.event == "system.reconnect", timeout=10)
        # RECONNECT_RETRY_MS (default 2000) jittered by ±50 %: a crowd must not come back in one instant.
        assert 1000 <= json.loads(ended.data)["retry_ms"] <= 3000, ended.data
    wait_until(lambda: setup.sentinel.master_port() == setup.replica.port, 30, 0.2, "sentinel promoted the replica")
    wait_until(lambda: get_json(f"{base}/readyz", timeout=2)[0] == 200, 20, 0.2, "service ready on the new master", ignore=(OSError,))

    # The new master's sequence is behind what clients saw: their cursor must not silently skip.
    assert _seq(setup.replica) < int(lost[-1].rpartition("-")[2])
    with SSEClient(f"{base}/stream?channels={CHAN}", {**auth, "Last-Event-ID": lost[-1]}, timeout=5) as after:
        assert after.status == 200, after.body()
        connected_info(after)
        reset = after.read_until(lambda f: f.event == "system.reset", timeout=3)
        assert json.loads(reset.data)["channels"] == [CHAN]
        fresh = wait_until(lambda: publish(base, token, CHAN, {"n": "after failover"}), 10, 0.2, ignore=(AssertionError,))
        frame = next_message(after, 3)
        assert frame is not None and frame.id == fresh
        assert fresh.partition("-")[0] != lost[-1].partition("-")[0], "a lost tail starts a new epoch"
    assert any(r.get("event") == "connection.open" for r in server.json_logs())


@pytest.mark.slow
def test_planned_sentinel_failover_resumes_without_reset(sentinel_service):
    setup, server = sentinel_service
    base = server.base_url
    token = dev_token(base, "sentinel-planned", ["channel:*"], ["publish:events"])
    with SSEClient(f"{base}/stream?channels={CHAN}", bearer(token), timeout=5) as before:
        assert before.status == 200
        connected_info(before)
        kept = [publish(base, token, CHAN, {"n": n}) for n in range(3)]
        assert [f.id for f in messages(before, 3, 3)] == kept
        head = _seq(setup.master)
        wait_until(lambda: _seq(setup.replica) == head, 5, message="replica caught up")
        with setup.sentinel.client() as sentinel:
            assert sentinel.execute_command("SENTINEL", "FAILOVER", "chatgenius")
        wait_until(lambda: setup.sentinel.master_port() == setup.replica.port, 20, 0.2, "sentinel promoted the replica")
        # Until Sentinel turns the old primary into a replica, it still takes writes, and loses them
        # then (a lost tail, answered with system.reset). Publish once it is a replica: nothing is lost.
        wait_until(lambda: _linked_replica(setup.master), 20, 0.2, "old primary demoted and linked")
        # The demoted primary answers READONLY: publishing reconnects to the new one by itself.
        after_switch = wait_until(lambda: publish(base, token, CHAN, {"n": 3}), 15, 0.2, ignore=(AssertionError,))
        assert _seq(setup.replica) >= int(after_switch.rpartition("-")[2])
    wait_until(lambda: get_json(f"{base}/readyz", timeout=2)[0] == 200, 20, 0.2, "service ready on the new primary", ignore=(OSError,))
    # Nothing was lost: the old cursor resumes with a replay, not a reset.
    with SSEClient(f"{base}/stream?channels={CHAN}", {**bearer(token), "Last-Event-ID": kept[-1]}, timeout=5) as after:
        assert after.status == 200, after.body()
        assert connected_info(after)["resumed"] is True
        replayed = messages(after, 1, 3)
        assert [f.id for f in replayed] == [after_switch]
        assert not any(f.event == "system.reset" for f in after.frames)
        live = publish(base, token, CHAN, {"n": 4})
        assert next_message(after, 3).id == live
