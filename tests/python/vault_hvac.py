#!/usr/bin/env python3
"""Drives raftsafe's Vault KV v2 API with hvac, the real Python Vault client.

    vault_hvac.py WRITE_URL READ_URL TOKEN CA_FILE

Writes through WRITE_URL (a follower, say) and reads through READ_URL (another node), so
the calls also cross the cluster. Every step asserts what Vault itself would answer; the
first failure raises with the step's name. On success prints one JSON object: the step
names, and the versions written, for the Rust side to cross-check against /api/v1.
"""
import base64
import json
import sys

import hvac
from hvac import exceptions

write_url, read_url, token, ca = sys.argv[1:5]
w = hvac.Client(url=write_url, token=token, verify=ca)
r = hvac.Client(url=read_url, token=token, verify=ca)
kv_w, kv_r = w.secrets.kv.v2, r.secrets.kv.v2
done = []


def step(name):
    done.append(name)


def expect_raise(kind, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except kind:
        return
    raise AssertionError(f"expected {kind.__name__} from {fn.__name__}")


# Who am I: hvac's is_authenticated (auth/token/lookup-self).
assert w.is_authenticated() and r.is_authenticated()
assert not hvac.Client(url=read_url, token="rs.not-a-real-token", verify=ca).is_authenticated()
step("is_authenticated")

health = r.sys.read_health_status(method="GET")
assert health["initialized"] is True and health["sealed"] is False, health
step("sys/health")

mounts = r.sys.list_mounted_secrets_engines()
assert mounts["data"]["secret/"]["type"] == "kv", mounts
assert mounts["data"]["secret/"]["options"]["version"] == "2", mounts
step("sys/mounts")

# Create, then update: versions 1 and 2.
v1 = kv_w.create_or_update_secret(path="hvac/app/db", secret={"password": "p1"})
assert v1["data"]["version"] == 1, v1
v2 = kv_w.create_or_update_secret(path="hvac/app/db", secret={"password": "p2"})
assert v2["data"]["version"] == 2, v2
assert v2["request_id"] and v2["lease_id"] == "" and v2["renewable"] is False, v2
step("create_or_update_secret")

got = kv_r.read_secret_version(path="hvac/app/db", raise_on_deleted_version=True)
assert got["data"]["data"] == {"password": "p2"}, got
assert got["data"]["metadata"]["version"] == 2 and got["data"]["metadata"]["destroyed"] is False
old = kv_r.read_secret_version(path="hvac/app/db", version=1, raise_on_deleted_version=True)
assert old["data"]["data"] == {"password": "p1"}, old
step("read_secret_version")

# Check-and-set: the wrong version is refused (Vault: 400), the right one accepted.
expect_raise(exceptions.InvalidRequest, kv_w.create_or_update_secret,
             path="hvac/app/db", secret={"password": "lost"}, cas=1)
v3 = kv_w.create_or_update_secret(path="hvac/app/db", secret={"password": "p3"}, cas=2)
assert v3["data"]["version"] == 3, v3
# cas=0: only if the path does not exist yet.
expect_raise(exceptions.InvalidRequest, kv_w.create_or_update_secret,
             path="hvac/app/db", secret={"x": "y"}, cas=0)
step("cas")

# Patch: hvac reads, merges and writes back with cas.
p = kv_w.patch(path="hvac/app/db", secret={"user": "app"})
assert p["data"]["version"] == 4, p
got = kv_r.read_secret_version(path="hvac/app/db", raise_on_deleted_version=True)
assert got["data"]["data"] == {"password": "p3", "user": "app"}, got
step("patch")

kv_w.create_or_update_secret(path="hvac/app/web/cert", secret={"pem": "x"})
keys = kv_r.list_secrets(path="hvac/app")["data"]["keys"]
assert keys == ["db", "web/"], keys
keys = kv_r.list_secrets(path="hvac")["data"]["keys"]
assert keys == ["app/"], keys
expect_raise(exceptions.InvalidPath, kv_r.list_secrets, path="hvac/nothing-here")
step("list_secrets")

meta = kv_r.read_secret_metadata(path="hvac/app/db")["data"]
assert meta["current_version"] == 4, meta
step("read_secret_metadata")

expect_raise(exceptions.InvalidPath, kv_r.read_secret_version, path="hvac/absent",
             raise_on_deleted_version=True)
step("read_absent")

bad = hvac.Client(url=read_url, token="rs.not-a-real-token", verify=ca)
expect_raise(exceptions.Forbidden, bad.secrets.kv.v2.read_secret_version, path="hvac/app/db",
             raise_on_deleted_version=True)
step("forbidden")

kv_w.delete_latest_version_of_secret(path="hvac/app/db")
expect_raise(exceptions.InvalidPath, kv_r.read_secret_version, path="hvac/app/db",
             raise_on_deleted_version=True)
# Older versions stay readable after a soft delete of the latest.
old = kv_r.read_secret_version(path="hvac/app/db", version=3, raise_on_deleted_version=True)
assert old["data"]["data"] == {"password": "p3"}, old
step("delete_latest_version_of_secret")

# The rest of the lifecycle, on a path of its own.
life = "hvac/app/life"
for n in range(1, 4):
    kv_w.create_or_update_secret(path=life, secret={"n": n})
kv_w.delete_secret_versions(path=life, versions=[3])
expect_raise(exceptions.InvalidPath, kv_r.read_secret_version, path=life,
             raise_on_deleted_version=True)
# raftsafe soft-deletes only the latest version (a 400, as Vault answers bad requests).
expect_raise(exceptions.InvalidRequest, kv_w.delete_secret_versions, path=life, versions=[1])
step("delete_secret_versions")

kv_w.undelete_secret_versions(path=life, versions=[3])
got = kv_r.read_secret_version(path=life, raise_on_deleted_version=True)
assert got["data"]["data"] == {"n": 3}, got
step("undelete_secret_versions")

kv_w.destroy_secret_versions(path=life, versions=[1])
expect_raise(exceptions.InvalidPath, kv_r.read_secret_version, path=life, version=1,
             raise_on_deleted_version=True)
meta = kv_r.read_secret_metadata(path=life)["data"]
assert meta["versions"]["1"]["destroyed"] is True, meta
assert meta["versions"]["3"]["destroyed"] is False and meta["versions"]["3"]["deletion_time"] == ""
step("destroy_secret_versions")

assert kv_r.read_configuration()["data"]["max_versions"] == 10
kv_w.update_metadata(path=life, max_versions=2)
meta = kv_r.read_secret_metadata(path=life)["data"]
assert meta["max_versions"] == 2 and meta["oldest_version"] == 2, meta
assert sorted(meta["versions"]) == ["2", "3"], meta
step("update_metadata")

kv_w.delete_metadata_and_all_versions(path=life)
expect_raise(exceptions.InvalidPath, kv_r.read_secret_metadata, path=life)
step("delete_metadata_and_all_versions")

# Custom metadata (Vault 1.9+): update_metadata replaces the whole map; read_secret_metadata
# and read_secret_version show it; a map absent is null, as Vault shows it.
cm = "hvac/app/cm"
kv_w.create_or_update_secret(path=cm, secret={"token": "t1"})
got = kv_r.read_secret_version(path=cm, raise_on_deleted_version=True)
assert got["data"]["metadata"]["custom_metadata"] is None, got
assert kv_r.read_secret_metadata(path=cm)["data"]["custom_metadata"] is None
kv_w.update_metadata(path=cm, custom_metadata={"owner": "team-a", "env": "prod"})
meta = kv_r.read_secret_metadata(path=cm)["data"]
assert meta["custom_metadata"] == {"owner": "team-a", "env": "prod"}, meta
assert meta["max_versions"] == 10 and meta["current_version"] == 1, meta
got = kv_r.read_secret_version(path=cm, raise_on_deleted_version=True)
assert got["data"]["metadata"]["custom_metadata"] == {"owner": "team-a", "env": "prod"}, got
assert got["data"]["data"] == {"token": "t1"}, got
# Without custom_metadata, update_metadata leaves it as it is.
kv_w.update_metadata(path=cm, max_versions=4)
meta = kv_r.read_secret_metadata(path=cm)["data"]
assert meta["max_versions"] == 4 and meta["custom_metadata"]["owner"] == "team-a", meta
# Metadata before data, as Vault allows: the path shows it with no version.
kv_w.update_metadata(path="hvac/app/cm-first", custom_metadata={"reserved-by": "ci"})
meta = kv_r.read_secret_metadata(path="hvac/app/cm-first")["data"]
assert meta["custom_metadata"] == {"reserved-by": "ci"} and meta["current_version"] == 0, meta
assert meta["versions"] == {}, meta
step("update_metadata custom_metadata")

# hvac 2.x has no patch_metadata: Vault's PATCH, sent as Vault requires it (a JSON merge
# patch: null removes a key).
patch = w.adapter.request(
    "PATCH", f"/v1/secret/metadata/{cm}",
    headers={"Content-Type": "application/merge-patch+json"},
    json={"custom_metadata": {"env": None, "tier": "gold"}},
)
assert patch.status_code == 204, patch
meta = kv_r.read_secret_metadata(path=cm)["data"]
assert meta["custom_metadata"] == {"owner": "team-a", "tier": "gold"}, meta
# A patch of a path with no metadata at all is Vault's 404.
expect_raise(exceptions.InvalidPath, w.adapter.request, "PATCH",
             "/v1/secret/metadata/hvac/app/no-such-path",
             headers={"Content-Type": "application/merge-patch+json"},
             json={"custom_metadata": {"a": "b"}})
step("patch_metadata")

# Vault's limits, each refused with Vault's message, nothing written.
def refused(custom_metadata, needle, path=cm):
    try:
        kv_w.update_metadata(path=path, custom_metadata=custom_metadata)
    except exceptions.InvalidRequest as e:
        assert needle in str(e), f"{e} should say {needle}"
        return
    raise AssertionError(f"{custom_metadata} was accepted")

refused({f"k{i}": "v" for i in range(65)},
        "custom_metadata validation failed: payload must contain at most 64 keys, provided 65")
refused({"k" * 129: "v"}, "is 129 but must be 0 < len(key) <= 128")
refused({"big": "v" * 513},
        'length of value for key "big" is 513 but must be 0 < len(value) <= 512')
refused({"n": 5}, 'value for key "n" must be a string')
meta = kv_r.read_secret_metadata(path=cm)["data"]
assert meta["custom_metadata"] == {"owner": "team-a", "tier": "gold"}, meta
step("custom_metadata limits")

# Transit (hvac's secrets.transit, mount "transit"): keys made and changed through one node,
# used through the other. Every change is seen by the next call on the other node: the
# read-index round runs before each encryption and decryption.
tw, tr = w.secrets.transit, r.secrets.transit
b64 = lambda b: base64.b64encode(b).decode()
w.sys.enable_secrets_engine("transit", path="transit")  # always there: succeeds, no change
assert r.sys.list_mounted_secrets_engines()["data"]["transit/"]["type"] == "transit"
tw.create_key(name="hvac-orders")
key = tr.read_key(name="hvac-orders")["data"]
assert key["type"] == "aes256-gcm96" and key["latest_version"] == 1, key
assert "hvac-orders" in tr.list_keys()["data"]["keys"]
step("transit create_key read_key list_keys")

card = b"4111 1111 1111 1111"
c1 = tw.encrypt_data(name="hvac-orders", plaintext=b64(card))["data"]
assert c1["ciphertext"].startswith("vault:v1:") and c1["key_version"] == 1, c1
got = tr.decrypt_data(name="hvac-orders", ciphertext=c1["ciphertext"])["data"]["plaintext"]
assert base64.b64decode(got) == card, got
step("transit encrypt_data decrypt_data")

tw.rotate_key(name="hvac-orders")
c2 = tr.encrypt_data(name="hvac-orders", plaintext=b64(b"new"))["data"]
assert c2["ciphertext"].startswith("vault:v2:") and c2["key_version"] == 2, c2
re = tr.rewrap_data(name="hvac-orders", ciphertext=c1["ciphertext"])["data"]
assert re["ciphertext"].startswith("vault:v2:"), re
got = tw.decrypt_data(name="hvac-orders", ciphertext=re["ciphertext"])["data"]["plaintext"]
assert base64.b64decode(got) == card
step("transit rotate_key rewrap_data")

tw.update_key_configuration(name="hvac-orders", min_decryption_version=2)
expect_raise(exceptions.InvalidRequest, tr.decrypt_data, name="hvac-orders",
             ciphertext=c1["ciphertext"])
assert tr.read_key(name="hvac-orders")["data"]["min_decryption_version"] == 2
tw.trim_key(name="hvac-orders", min_version=2)
key = tr.read_key(name="hvac-orders")["data"]
assert key["min_available_version"] == 2 and sorted(key["keys"]) == ["2"], key
step("transit update_key_configuration trim_key")

batch = tr.encrypt_data(name="hvac-orders", batch_input=[
    {"plaintext": b64(b"a"), "reference": "one"},
    {"plaintext": b64(b"b"), "reference": "two"},
])["data"]["batch_results"]
assert [b["reference"] for b in batch] == ["one", "two"], batch
plain = tw.decrypt_data(name="hvac-orders", batch_input=[
    {"ciphertext": b["ciphertext"]} for b in batch
])["data"]["batch_results"]
assert [base64.b64decode(p["plaintext"]) for p in plain] == [b"a", b"b"], plain
step("transit batch_input")

# What raftsafe's keys cannot do is refused, never silently ignored.
expect_raise(exceptions.InvalidRequest, tw.delete_key, name="hvac-orders")
expect_raise(exceptions.InvalidRequest, tw.create_key, name="hvac-rsa", key_type="rsa-2048")
expect_raise(exceptions.InvalidRequest, tw.encrypt_data, name="hvac-orders",
             plaintext=b64(b"x"), context=b64(b"tenant"))
expect_raise(exceptions.InvalidRequest, tw.decrypt_data, name="hvac-absent",
             ciphertext=c2["ciphertext"])
assert tr.read_key(name="hvac-orders")["data"]["latest_version"] == 2, "nothing changed"
step("transit refusals")

# ACL policies (hvac's sys/policy calls) and a token made from one (auth/token/create).
app_rules = 'path "secret/+/vault/hvac-app/*" { capabilities = ["create", "read", "update", "delete", "list"] }'
w.sys.create_or_update_policy(name="hvac-app", policy=app_rules)
assert "hvac-app" in r.sys.list_policies()["data"]["policies"]
assert r.sys.read_policy(name="hvac-app")["data"]["rules"] == app_rules
made = w.auth.token.create(policies=["hvac-app"], ttl="10m", display_name="hvac-app")["auth"]
assert made["policies"] == ["hvac-app"] and 590 <= made["lease_duration"] <= 600, made
app = hvac.Client(url=read_url, token=made["client_token"], verify=ca)
app.secrets.kv.v2.create_or_update_secret(path="vault/hvac-app/db", secret={"pw": "x"})
got = app.secrets.kv.v2.read_secret_version(path="vault/hvac-app/db", raise_on_deleted_version=True)
assert got["data"]["data"] == {"pw": "x"}, got
expect_raise(exceptions.Forbidden, app.secrets.kv.v2.read_secret_version,
             path="app/config", raise_on_deleted_version=True)
# A policy raftsafe could not enforce exactly is refused, and nothing is stored.
expect_raise(exceptions.InvalidRequest, w.sys.create_or_update_policy, name="hvac-bad",
             policy='path "secret/data/x" { capabilities = ["read"] }')
assert "hvac-bad" not in r.sys.list_policies()["data"]["policies"]
kv_w.delete_metadata_and_all_versions(path="vault/hvac-app/db")  # leave the tree as it was
w.sys.delete_policy(name="hvac-app")
assert "hvac-app" not in r.sys.list_policies()["data"]["policies"]
step("policies and token create")

# A further KV v2 mount (sys/mounts/hvac-kv): the folder hvac-kv/ of the one tree.
w.sys.enable_secrets_engine(backend_type="kv", path="hvac-kv", options={"version": "2"},
                            description="hvac's mount")
mounts = r.sys.list_mounted_secrets_engines()["data"]
assert mounts["hvac-kv/"]["type"] == "kv" and mounts["hvac-kv/"]["options"]["version"] == "2", mounts
made = kv_w.create_or_update_secret(path="db", secret={"pw": "m1"}, mount_point="hvac-kv")
assert made["data"]["version"] == 1, made
got = kv_r.read_secret_version(path="db", mount_point="hvac-kv", raise_on_deleted_version=True)
assert got["data"]["data"] == {"pw": "m1"}, got
same = kv_r.read_secret_version(path="hvac-kv/db", raise_on_deleted_version=True)
assert same["data"]["data"] == {"pw": "m1"}, same
assert kv_r.list_secrets(path="", mount_point="hvac-kv")["data"]["keys"] == ["db"]
# Refused while the folder holds a secret, nothing removed; then removed once empty.
expect_raise(exceptions.InvalidRequest, w.sys.disable_secrets_engine, path="hvac-kv")
assert "hvac-kv/" in r.sys.list_mounted_secrets_engines()["data"]
expect_raise(exceptions.InvalidRequest, w.sys.enable_secrets_engine, backend_type="kv",
             path="hvac-kv1", options={"version": "1"})
kv_w.delete_metadata_and_all_versions(path="db", mount_point="hvac-kv")
w.sys.disable_secrets_engine(path="hvac-kv")
mounts = r.sys.list_mounted_secrets_engines()["data"]
assert "hvac-kv/" not in mounts and "hvac-kv1/" not in mounts, mounts
step("kv mounts")

print(json.dumps({"steps": done}))
