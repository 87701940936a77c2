#!/usr/bin/env python3
"""Logs workloads in to raftsafe with hvac's AppRole and JWT helpers, using credentials made
here: secret ids from the API, and JWTs signed with RSA and EC keys generated in this run.

    vault_login.py WRITE_URL READ_URL TOKEN CA_FILE

Administers through WRITE_URL (as TOKEN, an unrestricted admin) and logs in through READ_URL
(another node), so a credential created on one node is used on another. Every step asserts
what raftsafe (and, where it has one, Vault) answers; the first failure raises with the
step's name. The JWT refusal matrix checks that no refused login issued a token (the token
listing does not grow). On success prints one JSON object: the step names.
"""
import base64
import hashlib
import hmac
import json
import sys
import time

import hvac
import jwt as pyjwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hvac import exceptions

write_url, read_url, token, ca = sys.argv[1:5]
admin = hvac.Client(url=write_url, token=token, verify=ca)
anon = hvac.Client(url=read_url, verify=ca)
done = []


def step(name):
    done.append(name)


def refused(fn, needle, *args, **kwargs):
    """fn must fail with a 400 whose message contains needle."""
    try:
        fn(*args, **kwargs)
    except exceptions.InvalidRequest as e:
        assert needle in str(e), f"{needle!r} not in {e}"
        return str(e)
    raise AssertionError(f"expected a 400 saying {needle!r}")


def as_token(t, url=read_url):
    return hvac.Client(url=url, token=t, verify=ca)


def token_count():
    r = requests.get(f"{write_url}/api/v1/tokens", headers={"Authorization": f"Bearer {token}"},
                     verify=ca, timeout=30)
    r.raise_for_status()
    return r.json()["totalResults"]


# Seed the secrets the workloads will read.
kv = admin.secrets.kv.v2
kv.create_or_update_secret(path="ci/deploy", secret={"key": "ci-key"})
kv.create_or_update_secret(path="payments/db", secret={"password": "pay"})
kv.create_or_update_secret(path="other/x", secret={"y": "z"})

methods = admin.sys.list_auth_methods()
assert methods["data"]["approle/"]["type"] == "approle", methods
assert methods["data"]["jwt/"]["type"] == "jwt", methods
admin.sys.enable_auth_method("approle")  # always there: a no-op, as the README says
step("sys/auth")

# ---- AppRole -----------------------------------------------------------------------------
admin.write_data("auth/approle/role/ci", data={
    "token_scopes": ["read:secret"], "token_paths": ["ci/*"], "token_ttl": "10m",
    "token_max_ttl": "1h", "secret_id_num_uses": 0,
})
role = admin.read("auth/approle/role/ci")["data"]
assert role["token_scopes"] == ["read:secret"] and role["token_paths"] == ["ci/*"], role
assert role["token_ttl"] == 600 and role["token_max_ttl"] == 3600, role
assert admin.list("auth/approle/role")["data"]["keys"] == ["ci"]
# A role grants something: scopes on paths, or named policies (which must exist).
refused(admin.write_data, "token_policies", "auth/approle/role/bad", data={"token_ttl": "1m"})
refused(admin.write_data, "no policy named 'admin-policy'", "auth/approle/role/bad",
        data={"token_policies": ["admin-policy"]})
step("approle role")

role_id = admin.auth.approle.read_role_id("ci")["data"]["role_id"]
sid = admin.auth.approle.generate_secret_id("ci", metadata={"pipeline": "deploy"})["data"]
assert sid["secret_id"] and len(sid["secret_id_accessor"]) == 16, sid
looked = admin.write_data("auth/approle/role/ci/secret-id/lookup",
                          data={"secret_id": sid["secret_id"]})["data"]
assert looked["metadata"] == {"pipeline": "deploy"}, looked
assert looked["secret_id_accessor"] == sid["secret_id_accessor"], looked
# Vault's custom secret id: one the administrator chose (Terraform and CI systems set it).
CUSTOM = "ci-pipeline-secret-0001"
custom = admin.auth.approle.create_custom_secret_id("ci", CUSTOM)["data"]
assert custom["secret_id"] == CUSTOM and len(custom["secret_id_accessor"]) == 16, custom
refused(admin.auth.approle.create_custom_secret_id, "already registered", "ci", CUSTOM)
refused(admin.write_data, "secret_id", "auth/approle/role/ci/custom-secret-id", data={})
assert anon.auth.approle.login(role_id, CUSTOM, use_token=False)["auth"]["client_token"]
admin.auth.approle.destroy_secret_id("ci", CUSTOM)
step("role-id secret-id")

login = anon.auth.approle.login(role_id, sid["secret_id"], use_token=False)
auth = login["auth"]
assert auth["client_token"].startswith("rs.") and auth["renewable"] is True, auth
assert auth["policies"] == ["read:secret"] and auth["metadata"]["role_name"] == "ci", auth
assert 590 <= auth["lease_duration"] <= 600, auth
ci = as_token(auth["client_token"])
assert ci.secrets.kv.v2.read_secret_version(path="ci/deploy", raise_on_deleted_version=True)[
    "data"]["data"] == {"key": "ci-key"}
try:
    ci.secrets.kv.v2.read_secret_version(path="payments/db", raise_on_deleted_version=True)
    raise AssertionError("the ci token read outside ci/*")
except exceptions.Forbidden:
    pass
try:
    ci.secrets.kv.v2.create_or_update_secret(path="ci/deploy", secret={"no": "write"})
    raise AssertionError("the ci token wrote without write:secret")
except exceptions.Forbidden:
    pass
me = ci.auth.token.lookup_self()["data"]
assert me["accessor"] == auth["accessor"] and me["display_name"] == "approle-ci", me
step("approle login")

renewed = ci.auth.token.renew_self(increment="30m")["auth"]
assert 1790 <= renewed["lease_duration"] <= 1800, renewed
step("renew_self")

# A wrong secret id, a wrong role id: Vault's one message, nothing issued.
before = token_count()
refused(anon.auth.approle.login, "invalid role or secret ID", role_id, "not-the-secret-id",
        use_token=False)
refused(anon.auth.approle.login, "invalid role or secret ID", "not-a-role-id", sid["secret_id"],
        use_token=False)
# A single-use secret id logs in once.
once = admin.write_data("auth/approle/role/ci/secret-id", data={"num_uses": 1})["data"]
anon.auth.approle.login(role_id, once["secret_id"], use_token=False)
refused(anon.auth.approle.login, "invalid role or secret ID", role_id, once["secret_id"],
        use_token=False)
assert token_count() == before + 1, "only the one good login issued a token"
# A destroyed secret id stops logging in.
admin.write_data("auth/approle/role/ci/secret-id/destroy", data={"secret_id": sid["secret_id"]})
refused(anon.auth.approle.login, "invalid role or secret ID", role_id, sid["secret_id"],
        use_token=False)
step("approle refusals")

# ---- AppRole with Vault's token_policies ---------------------------------------------------
CI_READ = 'path "secret/+/ci/*" { capabilities = ["read", "list"] }'
admin.sys.create_or_update_acl_policy("ci-read", CI_READ)
refused(admin.write_data, "cannot issue root tokens", "auth/approle/role/bad",
        data={"token_policies": ["root"]})
admin.write_data("auth/approle/role/pol", data={"token_policies": "ci-read,default",
                                                 "token_ttl": "10m"})
role = admin.read("auth/approle/role/pol")["data"]
assert role["token_policies"] == ["ci-read", "default"] and role["token_scopes"] == [], role
# A new role id keeps the role's policies.
admin.write_data("auth/approle/role/pol/role-id", data={"role_id": "pol-role-id"})
role = admin.read("auth/approle/role/pol")["data"]
assert role["token_policies"] == ["ci-read", "default"], role
pol_sid = admin.auth.approle.generate_secret_id("pol")["data"]["secret_id"]


def pol_login():
    out = anon.auth.approle.login("pol-role-id", pol_sid, use_token=False)["auth"]
    assert out["policies"] == ["ci-read", "default"], out
    return as_token(out["client_token"])


def can_read(client, path):
    try:
        client.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)
        return True
    except exceptions.Forbidden:
        return False


before = pol_login()
assert can_read(before, "ci/deploy") and not can_read(before, "payments/db")
try:
    before.secrets.kv.v2.create_or_update_secret(path="ci/deploy", secret={"no": "write"})
    raise AssertionError("a ci-read token wrote")
except exceptions.Forbidden:
    pass
assert before.auth.token.lookup_self()["data"]["policies"] == ["ci-read", "default"]
# Widening the policy reaches the next login; the token issued before keeps what it had.
admin.sys.create_or_update_acl_policy(
    "ci-read", CI_READ + '\npath "secret/+/payments/*" { capabilities = ["read", "list"] }')
after = pol_login()
assert can_read(after, "payments/db") and not can_read(before, "payments/db")
# A deleted policy grants the next login nothing.
admin.sys.delete_acl_policy("ci-read")
assert not can_read(pol_login(), "ci/deploy")
step("approle token_policies")

# ---- JWT ---------------------------------------------------------------------------------
rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
rsa_pub = rsa_key.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
ec_key = ec.generate_private_key(ec.SECP256R1())
ec_jwk = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
ec_jwk.update({"kid": "ec-1", "use": "sig", "alg": "ES256"})
stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ISS = "https://kubernetes.default.svc"
SUB = "system:serviceaccount:payments:api"

admin.write_data("auth/jwt/config", data={
    "bound_issuer": ISS, "jwt_validation_pubkeys": [rsa_pub],
    "jwks": json.dumps({"keys": [ec_jwk]}), "jwt_supported_algs": ["RS256", "ES256"],
})
admin.write_data("auth/jwt/role/payments", data={
    "role_type": "jwt", "bound_audiences": ["raftsafe"], "bound_subject": SUB,
    "bound_claims": {"team": ["payments", "platform"]}, "user_claim": "sub",
    "token_scopes": "read:secret", "token_paths": "payments/*", "token_ttl": "15m",
})
assert admin.read("auth/jwt/role/payments")["data"]["bound_audiences"] == ["raftsafe"]
step("jwt config and role")


def claims(**over):
    now = int(time.time())
    c = {"iss": ISS, "sub": SUB, "aud": ["raftsafe"], "team": "payments",
         "iat": now, "nbf": now - 5, "exp": now + 300}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def sign(c, key=rsa_key, alg="RS256", kid=None):
    headers = {"kid": kid} if kid else None
    return pyjwt.encode(c, key, algorithm=alg, headers=headers)


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


jwt_login = anon.auth.jwt.jwt_login
for name, token_jwt in [("RS256 (PEM key)", sign(claims())),
                        ("ES256 (JWKS key)", sign(claims(), ec_key, "ES256", "ec-1"))]:
    out = jwt_login("payments", token_jwt, use_token=False)["auth"]
    assert out["policies"] == ["read:secret"] and out["metadata"]["sub"] == SUB, (name, out)
    t = as_token(out["client_token"])
    got = t.secrets.kv.v2.read_secret_version(path="payments/db", raise_on_deleted_version=True)
    assert got["data"]["data"] == {"password": "pay"}, (name, got)
    try:
        t.secrets.kv.v2.read_secret_version(path="ci/deploy", raise_on_deleted_version=True)
        raise AssertionError(f"{name}: the payments token read outside payments/*")
    except exceptions.Forbidden:
        pass
# A JWT role may name policies too: the same login path, the same grants.
admin.sys.create_or_update_acl_policy(
    "pay-read", 'path "secret/+/payments/*" { capabilities = ["read", "list"] }')
# hvac's own helper (it sends the role's name in the body too, as Vault accepts).
admin.auth.jwt.create_role("payments-pol", user_claim="sub", allowed_redirect_uris=[],
                           role_type="jwt", bound_audiences=["raftsafe"],
                           token_policies=["pay-read"])
assert admin.auth.jwt.read_role("payments-pol")["data"]["token_policies"] == ["pay-read"]
refused(admin.write_data, "the path names role 'payments-pol'", "auth/jwt/role/payments-pol",
        data={"name": "other", "token_policies": ["pay-read"]})
out = jwt_login("payments-pol", sign(claims()), use_token=False)["auth"]
assert out["policies"] == ["pay-read"], out
t = as_token(out["client_token"])
assert can_read(t, "payments/db") and not can_read(t, "ci/deploy")
step("jwt login")

# The refusal matrix: each refused with a message naming the check, and no token issued.
before = token_count()
header_none = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
payload = b64(json.dumps(claims()).encode())
unsigned = f"{header_none}.{payload}."
header_hs = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
mac = hmac.new(rsa_pub.encode(), f"{header_hs}.{payload}".encode(), hashlib.sha256).digest()
confused = f"{header_hs}.{payload}.{b64(mac)}"
now = int(time.time())
matrix = [
    ("expired", sign(claims(exp=now - 3600, nbf=now - 7200, iat=now - 7200)), "expired"),
    ("not yet valid", sign(claims(nbf=now + 3600)), "not valid yet"),
    ("wrong audience", sign(claims(aud=["someone-else"])), "audience"),
    ("wrong issuer", sign(claims(iss="https://evil.example")), "issuer"),
    ("wrong subject", sign(claims(sub="system:serviceaccount:other:api")), "bound_subject"),
    ("claim not bound", sign(claims(team="marketing")), "bound_claims"),
    ("no exp", sign(claims(exp=None)), "'exp'"),
    ("unknown key", sign(claims(), stranger), "signature"),
    ("alg none", unsigned, "algorithm"),
    ("key confusion (HS256 over the RSA public key)", confused, "HS256"),
    ("garbage", "not.a.jwt", "malformed"),
]
for name, bad, needle in matrix:
    try:
        refused(jwt_login, needle, "payments", bad, use_token=False)
    except AssertionError as e:
        raise AssertionError(f"{name}: {e}")
refused(jwt_login, "could not be found", "no-such-role", sign(claims()), use_token=False)
assert token_count() == before, "a refused JWT login issued a token"
step("jwt refusals")

# Rotating the keys away from the RSA key stops its logins at once.
admin.write_data("auth/jwt/config", data={
    "bound_issuer": ISS, "jwks": json.dumps({"keys": [ec_jwk]}),
    "jwt_supported_algs": ["ES256"],
})
refused(jwt_login, "RS256", "payments", sign(claims()), use_token=False)
admin.delete("auth/jwt/role/payments")
refused(jwt_login, "could not be found", "payments",
        sign(claims(), ec_key, "ES256", "ec-1"), use_token=False)
step("key rotation and role deletion stop logins")

print(json.dumps({"steps": done}))
