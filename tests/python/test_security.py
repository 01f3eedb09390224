"""Authentication and TLS through the real ADBC driver.

Certificates are generated in the test (a throwaway CA, a server certificate
for 127.0.0.1 and a client certificate), so nothing is read from the machine.
"""

import datetime
import ipaddress
import subprocess

import adbc_driver_flightsql.dbapi as flightsql
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import Server, quiver_bin

ROOT_CERTS = "adbc.flight.sql.client_option.tls_root_certs"
MTLS_CERT = "adbc.flight.sql.client_option.mtls_cert_chain"
MTLS_KEY = "adbc.flight.sql.client_option.mtls_private_key"


def _pem_key(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert(subject, issuer_name, issuer_key, public_key, *, ca=False, server=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("quiver test CA", "quiver test CA", ca_key, ca_key.public_key(), ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("127.0.0.1", "quiver test CA", ca_key, server_key.public_key(), server=True)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("a client", "quiver test CA", ca_key, client_key.public_key())
    files = {
        "ca": ca,
        "server_cert": server,
        "server_key": _pem_key(server_key),
        "client_cert": client,
        "client_key": _pem_key(client_key),
    }
    paths = {}
    for name, text in files.items():
        (d / f"{name}.pem").write_text(text)
        paths[name] = str(d / f"{name}.pem")
    return files, paths


def _scalar(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def test_users_log_in_and_everyone_else_is_refused(tmp_path):
    s = Server(
        tmp_path / "data", env={"QUIVER_USERNAME": "ann", "QUIVER_PASSWORD": "s3cret"}
    ).start()
    try:
        with flightsql.connect(
            s.uri, db_kwargs={"username": "ann", "password": "s3cret"}, autocommit=True
        ) as conn:
            with conn.cursor() as cur:
                cur.execute("CREATE TABLE t (id BIGINT NOT NULL, v FLOAT[2], PRIMARY KEY (id))")
                cur.execute("INSERT INTO t VALUES (1, [1, 2]), (2, [3, 4])")
            assert _scalar(conn, "SELECT count(*) FROM t") == 2
            assert conn.adbc_get_table_schema("t").names == ["id", "v"]
        for kwargs in [
            {"username": "ann", "password": "wrong"},
            {"username": "bob", "password": "s3cret"},
            {},
        ]:
            with pytest.raises(Exception) as err:
                with flightsql.connect(s.uri, db_kwargs=kwargs, autocommit=True) as conn:
                    _scalar(conn, "SELECT count(*) FROM t")
            msg = str(err.value)
            assert "Unauthenticated" in msg or "UNAUTHENTICATED" in msg, msg
        # A bearer token someone made up is refused as well.
        with pytest.raises(Exception) as err:
            with flightsql.connect(
                s.uri,
                db_kwargs={"adbc.flight.sql.authorization_header": "Bearer abc.def"},
                autocommit=True,
            ) as conn:
                _scalar(conn, "SELECT count(*) FROM t")
        assert "expired bearer token" in str(err.value)
        assert s.alive()
    finally:
        s.stop()


def test_tls_with_a_certificate_made_in_the_test(tmp_path, pki):
    files, paths = pki
    s = Server(
        tmp_path / "data",
        ["--tls-cert", paths["server_cert"], "--tls-key", paths["server_key"]],
    ).start()
    try:
        assert s.uri.startswith("grpc+tls://127.0.0.1:"), s.uri
        with flightsql.connect(s.uri, db_kwargs={ROOT_CERTS: files["ca"]}, autocommit=True) as conn:
            assert _scalar(conn, "SELECT 40 + 2") == 42
        # Without trusting the CA the driver refuses the certificate; a
        # plaintext client gets no answer either.
        for uri, kwargs in [(s.uri, {}), (s.uri.replace("grpc+tls", "grpc"), {})]:
            with pytest.raises(Exception):
                with flightsql.connect(uri, db_kwargs=kwargs, autocommit=True) as conn:
                    _scalar(conn, "SELECT 1")
        assert s.alive()
    finally:
        s.stop()


def test_mutual_tls_and_auth_together(tmp_path, pki):
    files, paths = pki
    s = Server(
        tmp_path / "data",
        [
            "--tls-cert", paths["server_cert"],
            "--tls-key", paths["server_key"],
            "--tls-client-ca", paths["ca"],
        ],
        env={"QUIVER_USERNAME": "ann", "QUIVER_PASSWORD": "pw"},
    ).start()
    try:
        good = {
            ROOT_CERTS: files["ca"],
            MTLS_CERT: files["client_cert"],
            MTLS_KEY: files["client_key"],
            "username": "ann",
            "password": "pw",
        }
        with flightsql.connect(s.uri, db_kwargs=good, autocommit=True) as conn:
            assert _scalar(conn, "SELECT 1 + 1") == 2
        # No client certificate: the TLS handshake fails.
        no_cert = {k: v for k, v in good.items() if k not in (MTLS_CERT, MTLS_KEY)}
        # A client certificate, but the wrong password.
        bad_password = {**good, "password": "nope"}
        for kwargs in [no_cert, bad_password]:
            with pytest.raises(Exception):
                with flightsql.connect(s.uri, db_kwargs=kwargs, autocommit=True) as conn:
                    _scalar(conn, "SELECT 1")
        assert s.alive()
    finally:
        s.stop()


def test_no_credentials_means_loopback_only(tmp_path):
    r = subprocess.run(
        [quiver_bin(), "serve", "--data-dir", str(tmp_path / "d"), "--listen", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
    assert "--allow-unauthenticated" in r.stderr and "0.0.0.0:0" in r.stderr, r.stderr
    # Nothing was created: the check runs before the store is opened.
    assert not (tmp_path / "d").exists()
    for args, needle in [
        (["--username", "ann"], "--password"),
        (["--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(tmp_path / "k.pem")], "missing.pem"),
    ]:
        r = subprocess.run(
            [quiver_bin(), "serve", "--data-dir", str(tmp_path / "d2"), "--listen", "127.0.0.1:0", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode != 0 and needle in r.stderr, r.stderr


def test_users_file(tmp_path):
    users = tmp_path / "users"
    users.write_text("# team\nann:one\n\nbob:two:with-colon\n")
    s = Server(tmp_path / "data", ["--users-file", str(users)]).start()
    try:
        for user, password in [("ann", "one"), ("bob", "two:with-colon")]:
            with flightsql.connect(
                s.uri, db_kwargs={"username": user, "password": password}, autocommit=True
            ) as conn:
                assert _scalar(conn, "SELECT 1") == 1
        with pytest.raises(Exception, match="(?i)unauthenticated"):
            with flightsql.connect(s.uri, db_kwargs={"username": "ann", "password": "two"}, autocommit=True) as conn:
                _scalar(conn, "SELECT 1")
    finally:
        s.stop()
    bad = tmp_path / "bad"
    bad.write_text("ann:one\nnocolon\n")
    r = subprocess.run(
        [quiver_bin(), "serve", "--data-dir", str(tmp_path / "d3"), "--users-file", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0 and "line 2: expected name:password" in r.stderr, r.stderr
