"""The personal-data vault against a real PostgreSQL.

Values sealed with a key per person open again, in any process of the service; the keys are
stored only wrapped by the service's KEK, which rotates; a person is found by ID number only
through the service's own blind index, and their ref is random; erasing them (crypto-
shredding) makes their values unreadable everywhere within the key cache's time-to-live,
removes their index entries and masks, and nothing more can be sealed for that ref."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time

import psycopg
import pytest

from tuoyu_shared.config import ConfigurationError, parse_keks, settings_for
from tuoyu_shared.personal_data import (
    DEFAULT_KEY_TTL,
    ERASED_MASK,
    KeyUnavailable,
    PersonalDataErased,
    PersonalDataVault,
)

INDEX_KEY = "test-blind-index-key-of-one-service"
KEK_1 = ("k1", bytes(range(32)))
KEK_2 = ("k2", bytes(range(32, 64)))
ID_NUMBER = "110101199003074514"
TINY_TTL = 0.2


@pytest.fixture
def database(fresh_database) -> str:
    return fresh_database("vault", migrated="kit")


@pytest.fixture
def vaults(database):
    """A factory of vaults on the test's database (each like another process), closed after."""
    made: list[PersonalDataVault] = []

    def make(index_key: str = INDEX_KEY, keks=(KEK_1,), url: str | None = None,
             **kwargs) -> PersonalDataVault:
        vault = PersonalDataVault(url or database, index_key, keks, **kwargs)
        made.append(vault)
        return vault

    yield make
    for vault in made:
        vault.close()


def table(database: str, sql: str) -> list[tuple]:
    with psycopg.connect(database) as conn:
        return conn.execute(sql).fetchall()


def keys_table(database: str) -> dict[str, tuple[bytes | None, str | None]]:
    return {ref: (None if key is None else bytes(key), kid) for ref, key, kid in table(
        database, "SELECT person_ref, wrapped_key, kek_id FROM person_keys")}


def test_refs_are_random_and_found_only_through_the_blind_index(vaults, database):
    vault = vaults()
    assert vault.find("practitioner", ID_NUMBER) is None
    ref = vault.enrol("practitioner", ID_NUMBER)
    assert len(ref) == 32 and int(ref, 16) >= 0
    assert vault.enrol("practitioner", ID_NUMBER) == ref  # found again, the same
    assert vault.find("practitioner", ID_NUMBER.lower()) == ref  # x and X alike
    assert vault.find("person_in_charge", ID_NUMBER) is None  # a kind of its own
    # Not a hash of the number: neither the digest under this key nor a plain hash.
    for digest in (hmac.new(INDEX_KEY.encode(), b"resident-id:" + ID_NUMBER.encode(),
                            hashlib.sha256).hexdigest(),
                   hashlib.sha256(ID_NUMBER.encode()).hexdigest()):
        assert ref not in digest
    # Another kind of person with the same number gets another ref: nothing derives from it.
    assert vault.enrol("child", ID_NUMBER) != ref
    # The index holds a keyed digest, never the number.
    [(kind, digest, stored_ref)] = table(
        database, "SELECT kind, digest, person_ref FROM person_index WHERE kind = "
                  "'practitioner'")
    assert ID_NUMBER.encode() not in bytes(digest) and stored_ref == ref
    assert vault.refs_of(ID_NUMBER) == {"child": vault.find("child", ID_NUMBER),
                                        "practitioner": ref}


def test_another_service_key_finds_nothing(vaults):
    """A digest from one service's index matches nothing under another service's key."""
    mine = vaults()
    ref = mine.enrol("practitioner", ID_NUMBER)
    theirs = vaults(index_key="another-service-blind-index-key")
    assert theirs.find("practitioner", ID_NUMBER) is None
    assert theirs.blind_index(ID_NUMBER) != mine.blind_index(ID_NUMBER)
    assert mine.enrol("practitioner", ID_NUMBER, "f" * 32) == ref  # an entry there wins


def test_adopting_a_ref_issued_elsewhere(vaults):
    vault = vaults()
    issued = "0123456789abcdef0123456789abcdef"
    assert vault.enrol("practitioner", ID_NUMBER, issued) == issued
    assert vault.find("practitioner", ID_NUMBER) == issued


def test_enrol_many_agrees_with_enrol(vaults):
    vault = vaults()
    first = vault.enrol("person_in_charge", ID_NUMBER)
    numbers = [ID_NUMBER, "11010119900307451X", "110101199003074522", ID_NUMBER]
    refs = vault.enrol_many("person_in_charge", numbers)
    assert refs[0] == refs[3] == first and len(set(refs)) == 3
    assert vault.enrol("person_in_charge", "110101199003074522") == refs[2]


def test_seal_and_open_round_trip(vaults, database):
    vault = vaults()
    ref = vault.enrol("practitioner", ID_NUMBER)
    sealed = vault.seal(ref, ID_NUMBER)
    assert set(sealed) == {"ref", "sealed"}  # no mask: nothing of the value in the clear
    assert ID_NUMBER not in sealed["sealed"]
    assert vault.open(sealed) == ID_NUMBER
    assert vault.seal(ref, ID_NUMBER)["sealed"] != sealed["sealed"]  # a fresh nonce
    person = vault.seal_person(ref, {"name": "张三丰", "phone": "13912345678"},
                               display={"name": "张**"})
    assert person["ref"] == ref and set(person["name"]) == {"ref", "sealed"}
    assert vault.open(person["name"]) == "张三丰"
    other = vaults()  # another process of the service
    assert other.open(sealed) == ID_NUMBER and other.open(person["phone"]) == "13912345678"
    assert other.open({"ref": ref, "masked": "张**"}) is None  # a mask alone opens nothing
    assert other.display([ref]) == {ref: "张**"}
    assert other.display(["f" * 32]) == {"f" * 32: ERASED_MASK}
    assert list(keys_table(database)) == [ref]  # one key per person


def counting_statements(vault: PersonalDataVault) -> list[str]:
    """The statements the vault sends from now on (its connection's ``execute``)."""
    sent: list[str] = []
    conn = vault._connection()
    execute = conn.execute

    def counted(query, *args, **kwargs):
        sent.append(str(query))
        return execute(query, *args, **kwargs)

    conn.execute = counted  # type: ignore[method-assign]
    return sent


def test_enrol_and_seal_is_one_statement_for_a_new_person(vaults, database):
    vault = vaults()
    sent = counting_statements(vault)
    person = vault.enrol_and_seal("person_in_charge", ID_NUMBER,
                                  {"name": "张三丰", "id_number": ID_NUMBER},
                                  display={"name": "张**"})
    assert len(sent) == 1
    ref = person["ref"]
    other = vaults()  # another process: the key it stored opens the values
    assert other.find("person_in_charge", ID_NUMBER) == ref
    assert other.open(person["name"]) == "张三丰"
    assert other.open(person["id_number"]) == ID_NUMBER
    assert other.display([ref]) == {ref: "张**"}
    assert list(keys_table(database)) == [ref]


def test_enrol_and_seal_of_a_known_person_keeps_their_ref_and_key(vaults, database):
    vault = vaults()
    first = vault.enrol_and_seal("person_in_charge", ID_NUMBER, {"name": "张三丰"},
                                 display={"name": "张**"})
    again = vaults().enrol_and_seal("person_in_charge", ID_NUMBER, {"name": "张三"},
                                    display={"name": "张*"})
    assert again["ref"] == first["ref"] == vault.find("person_in_charge", ID_NUMBER)
    assert vault.open(again["name"]) == "张三" and vault.open(first["name"]) == "张三丰"
    assert vaults().display([first["ref"]]) == {first["ref"]: "张*"}  # the latest wins
    # nothing of the fresh ref the second one tried is left behind
    assert list(keys_table(database)) == [first["ref"]]
    assert table(database, "SELECT count(*) FROM person_index")[0][0] == 1
    assert table(database, "SELECT count(DISTINCT person_ref) FROM person_display")[0][0] == 1
    # the same number as another kind of person is another entry
    practitioner = vault.enrol_and_seal("practitioner", ID_NUMBER, {"name": "张三丰"})
    assert practitioner["ref"] != first["ref"]


def test_enrol_and_seal_after_an_erasure_is_a_new_person(vaults):
    vault = vaults()
    first = vault.enrol_and_seal("person_in_charge", ID_NUMBER, {"name": "张三丰"},
                                 display={"name": "张**"})
    assert vault.erase(first["ref"]) is True
    again = vault.enrol_and_seal("person_in_charge", ID_NUMBER, {"name": "张三丰"},
                                 display={"name": "张**"})
    assert again["ref"] != first["ref"]
    assert vault.open(again["name"]) == "张三丰" and vault.open(first["name"]) is None


def test_data_keys_are_stored_only_wrapped_by_the_kek(vaults, database):
    vault = vaults()
    ref = vault.enrol("practitioner", ID_NUMBER)
    sealed = vault.seal(ref, ID_NUMBER)
    [(wrapped, kid)] = keys_table(database).values()
    assert kid == "k1" and len(wrapped) == 12 + 32 + 16  # nonce, key, tag
    # The stored bytes do not open the value: they are not the data key.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    raw = base64.b64decode(sealed["sealed"])
    for candidate in (wrapped[:32], wrapped[12:44], wrapped[-32:]):
        with pytest.raises(Exception):  # noqa: B017 - any failure: it is not the key
            AESGCM(candidate).decrypt(raw[:12], raw[12:], ref.encode())
    # Without the KEK the key does not unwrap.
    stranger = vaults(keks=(("k1", os.urandom(32)),))
    with pytest.raises(KeyUnavailable, match="does not unwrap"):
        stranger.open(sealed)
    # A wrapped key moved to another person's row does not unwrap either (bound to the ref).
    other = vault.enrol("practitioner", "11010119900307451X")
    vault.seal(other, "x")
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("UPDATE person_keys SET wrapped_key = %s WHERE person_ref = %s",
                     (wrapped, other))
    with pytest.raises(KeyUnavailable):
        vaults().seal(other, "y")


def test_rotating_the_kek_rewraps_every_key_and_keeps_values_readable(vaults, database):
    old = vaults(keks=(KEK_1,))
    refs = [old.enrol("practitioner", f"11010119900307{i:04d}") for i in range(3)]
    sealed = [old.seal(ref, f"value {n}") for n, ref in enumerate(refs)]
    erased = old.enrol("practitioner", ID_NUMBER)
    old.seal(erased, "gone")
    old.erase(erased)
    new = vaults(keks=(KEK_2, KEK_1))  # the new KEK first, the old one still listed
    assert new.kek_usage() == {"k1": 3}
    assert new.open(sealed[0]) == "value 0"  # unwrapped with the old KEK meanwhile
    fresh = new.enrol("child", ID_NUMBER)
    new.seal(fresh, "new")
    assert new.kek_usage() == {"k1": 3, "k2": 1}
    report = new.rotate_kek()
    assert report["kek_id"] == "k2" and report["rewrapped"] == 3 and report["remaining"] == 0
    assert new.kek_usage() == {"k2": 4}
    assert new.rotate_kek()["rewrapped"] == 0  # again: nothing to do
    only_new = vaults(keks=(KEK_2,))  # the old KEK removed from the configuration
    assert [only_new.open(s) for s in sealed] == ["value 0", "value 1", "value 2"]
    assert keys_table(database)[erased] == (None, None)  # an erased key stays erased


def test_a_kek_missing_from_the_configuration_is_named(vaults):
    old = vaults(keks=(KEK_1,))
    ref = old.enrol("practitioner", ID_NUMBER)
    sealed = old.seal(ref, "v")
    new = vaults(keks=(KEK_2,))
    with pytest.raises(KeyUnavailable, match="KEK 'k1', which is not configured"):
        new.open(sealed)
    report = new.rotate_kek()
    assert report["rewrapped"] == 0 and report["remaining"] == 1
    assert report["unavailable"] == [ref]


def test_erased_person_no_longer_opens_nor_is_found(vaults, database):
    vault = vaults()
    ref = vault.enrol("practitioner", ID_NUMBER)
    sealed = vault.seal(ref, ID_NUMBER)
    vault.seal_person(ref, {"name": "张三丰"}, display={"name": "张**"})
    assert vault.open(sealed) == ID_NUMBER
    assert vault.erase(ref) is True
    assert vault.open(sealed) is None
    assert vaults().open(sealed) is None
    assert vault.find("practitioner", ID_NUMBER) is None
    assert vault.display([ref]) == {ref: ERASED_MASK}
    assert vault.is_erased(ref) and vaults().is_erased(ref)
    assert table(database, "SELECT count(*) FROM person_index")[0][0] == 0
    assert table(database, "SELECT count(*) FROM person_display")[0][0] == 0
    assert vault.erase(ref) is False  # again: nothing left to erase


def test_erasure_in_another_process_is_seen_once_the_ttl_has_passed(vaults):
    running = vaults(key_ttl=TINY_TTL)
    ref = running.enrol("practitioner", ID_NUMBER)
    sealed = running.seal(ref, ID_NUMBER)
    person = running.seal_person(ref, {"name": "张三丰"})
    assert running.open(sealed) == ID_NUMBER  # its key is in the cache now
    vaults().erase(ref)  # another process erases the person
    time.sleep(TINY_TTL * 1.5)
    assert running.open(sealed) is None
    assert running.open(person["name"]) is None
    with pytest.raises(PermissionError, match=f"personal data of {ref} was erased"):
        running.seal(ref, ID_NUMBER)


def test_the_key_cache_lives_for_its_ttl(vaults):
    assert DEFAULT_KEY_TTL == 60.0
    assert vaults().key_ttl == DEFAULT_KEY_TTL
    with pytest.raises(ValueError):
        vaults(key_ttl=-1)
    with pytest.raises(ValueError, match="key-encryption key"):
        vaults(keks=())


@pytest.mark.parametrize("seal", ["seal", "seal_person"])
def test_sealing_for_an_erased_person_raises(vaults, seal):
    vault = vaults()
    ref = vault.enrol("practitioner", ID_NUMBER)
    vault.seal(ref, ID_NUMBER)
    vault.erase(ref)  # the key is cached as erased in this vault

    def seal_now(v: PersonalDataVault) -> None:
        if seal == "seal":
            v.seal(ref, ID_NUMBER)
        else:
            v.seal_person(ref, {"name": "张三丰"}, display={"name": "张**"})

    for v in (vault, vaults()):  # the same process, and another one
        with pytest.raises(PersonalDataErased, match=f"personal data of {ref} was erased"):
            seal_now(v)
    assert vault.display([ref]) == {ref: ERASED_MASK}  # no mask came back either


def test_an_import_sealing_for_an_erased_ref_gets_refused(vaults):
    """The bulk path: ensure_keys first (caching the erasure), then seal_person per row."""
    erased_ref = vaults().enrol("person_in_charge", ID_NUMBER)
    vaults().seal(erased_ref, ID_NUMBER)
    vaults().erase(erased_ref)
    importer = vaults()
    refs = importer.enrol_many("person_in_charge",
                               [f"11010119900307{i:04d}" for i in range(3)]) + [erased_ref]
    importer.ensure_keys(refs)
    for ref in refs[:3]:
        assert importer.open(importer.seal_person(ref, {"name": "李四"})["name"]) == "李四"
    with pytest.raises(PermissionError, match=f"personal data of {erased_ref} was erased"):
        importer.seal_person(erased_ref, {"name": "张三丰"})


def test_erasing_someone_without_a_key_stops_any_process_sealing_for_them(vaults, database):
    vault = vaults()
    ref = vault.enrol("practitioner", ID_NUMBER)
    vault.erase(ref)
    assert keys_table(database) == {ref: (None, None)}
    with pytest.raises(PermissionError):
        vaults().seal(ref, ID_NUMBER)


def test_ensure_keys_creates_many_keys_at_once_and_keeps_existing_ones(vaults, database):
    first = vaults()
    known = first.enrol("practitioner", ID_NUMBER)
    sealed = first.seal(known, ID_NUMBER)
    before = keys_table(database)[known]
    importer = vaults()
    refs = importer.enrol_many("person_in_charge",
                               [f"11010119900307{i:04d}" for i in range(200)])
    importer.ensure_keys([*refs, known, *refs[:10]])  # duplicates are fine
    keys = keys_table(database)
    assert set(keys) == {*refs, known}
    assert all(kid == "k1" and len(wrapped) == 60 for wrapped, kid in keys.values())
    assert len({keys[r][0] for r in refs}) == len(refs)  # one key per person
    assert keys[known] == before  # an existing key is never replaced
    assert importer.open(sealed) == ID_NUMBER
    importer.ensure_keys(refs)  # again: nothing changes
    assert keys_table(database) == keys
    other = vaults()
    for ref in refs[:5]:
        assert other.open(importer.seal(ref, "v")) == "v"


def test_each_service_has_its_own_keys_and_production_requires_them(monkeypatch):
    for name in ("TUOYU_REGISTRATION_BLIND_INDEX_KEY", "TUOYU_REGISTRATION_KEKS",
                 "TUOYU_CREDIT_BLIND_INDEX_KEY", "TUOYU_CREDIT_KEKS",
                 "TUOYU_REGISTRATION_AUDIT_SIGNING_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TUOYU_ENVIRONMENT", "development")
    registration, credit = settings_for("registration"), settings_for("credit")
    assert registration.blind_index_key != credit.blind_index_key
    assert registration.keks != credit.keks and len(registration.keks[0][1]) == 32

    monkeypatch.setenv("TUOYU_ENVIRONMENT", "production")
    with pytest.raises(ConfigurationError, match="TUOYU_REGISTRATION_BLIND_INDEX_KEY"):
        settings_for("registration")
    monkeypatch.setenv("TUOYU_REGISTRATION_BLIND_INDEX_KEY", "short")
    with pytest.raises(ConfigurationError, match="at least 32"):
        settings_for("registration")
    monkeypatch.setenv("TUOYU_REGISTRATION_BLIND_INDEX_KEY", "k" * 40)
    with pytest.raises(ConfigurationError, match="TUOYU_REGISTRATION_KEKS"):
        settings_for("registration")
    key = base64.b64encode(bytes(32)).decode()
    monkeypatch.setenv("TUOYU_REGISTRATION_KEKS", f"2026b:{key},2026a:{key}")
    with pytest.raises(ConfigurationError, match="TUOYU_REGISTRATION_AUDIT_SIGNING_KEYS"):
        settings_for("registration")
    monkeypatch.setenv("TUOYU_REGISTRATION_AUDIT_SIGNING_KEYS", f"sig-2026:{key}")
    settings = settings_for("registration")
    assert [kid for kid, _ in settings.audit_signing_keys] == ["sig-2026"]
    assert settings.blind_index_key == "k" * 40
    assert [kid for kid, _ in settings.keks] == ["2026b", "2026a"]


@pytest.mark.parametrize(("text", "message"), [
    ("nokid", "entry 1 is not kid:base64"),
    ("a:!!!", "entry 1 (a) is not base64"),
    (f"a:{base64.b64encode(bytes(16)).decode()}", "entry 1 (a) is 16 bytes, not 32"),
    (f"a:{base64.b64encode(bytes(32)).decode()},a:{base64.b64encode(bytes(32)).decode()}",
     "kid a is given twice"),
])
def test_bad_kek_configuration_is_named(text, message):
    with pytest.raises(ConfigurationError) as e:
        parse_keks(text)
    assert message in str(e.value)


def test_url_safe_base64_keks_are_accepted():
    key = bytes([251] * 32)
    [(kid, parsed)] = parse_keks(f"x:{base64.urlsafe_b64encode(key).decode().rstrip('=')}")
    assert (kid, parsed) == ("x", key)


def test_the_rotate_kek_command_rewraps_a_service_s_keys(fresh_database):
    """What ops run: put the new KEK first in TUOYU_<SERVICE>_KEKS, keep the old one, run
    ``python -m tuoyu_<service> rotate-kek``, then drop the old one."""
    import subprocess
    import sys

    url = fresh_database("registration")
    old_kek = base64.b64encode(KEK_1[1]).decode()
    new_kek = base64.b64encode(KEK_2[1]).decode()
    vault = PersonalDataVault(url, INDEX_KEY, (KEK_1,))
    sealed = vault.seal(vault.enrol("person_in_charge", ID_NUMBER), "王晓梅")
    vault.close()

    def run(keks: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "TUOYU_REGISTRATION_DATABASE_URL": url,
               "TUOYU_REGISTRATION_BLIND_INDEX_KEY": INDEX_KEY,
               "TUOYU_REGISTRATION_KEKS": keks}
        return subprocess.run([sys.executable, "-m", "tuoyu_registration", "rotate-kek"],
                              env=env, capture_output=True, text=True, timeout=60)

    refused = run(f"k2:{new_kek}")  # the old KEK already dropped: nothing can be rewrapped
    assert refused.returncode == 1 and "not configured" in refused.stdout
    done = run(f"k2:{new_kek},k1:{old_kek}")
    assert done.returncode == 0, done.stderr
    assert "1 data key(s) rewrapped under KEK k2" in done.stdout
    after = PersonalDataVault(url, INDEX_KEY, (KEK_2,))
    try:
        assert after.open(sealed) == "王晓梅"
    finally:
        after.close()


def test_the_settings_never_print_their_secrets():
    settings = settings_for("registration")
    assert settings.blind_index_key not in repr(settings)
    assert all(repr(key) not in repr(settings) for _, key in settings.keks)


def test_a_missing_kek_is_a_503_for_ops_not_a_bug():
    from tuoyu_shared.errors import Unavailable

    assert issubclass(KeyUnavailable, Unavailable) and KeyUnavailable.http_status == 503


def test_a_mask_shown_while_an_erasure_commits_does_not_survive_it(vaults, database):
    """set_display waits for an erasure in flight on the person's key row, then sees it."""
    import threading

    vault = vaults()
    ref = vault.enrol("practitioner", ID_NUMBER)
    vault.seal_person(ref, {"name": "张三丰"}, display={"name": "张**"})
    done = threading.Event()
    with psycopg.connect(database) as eraser:  # an erasure, its key row updated, not committed
        eraser.execute("UPDATE person_keys SET wrapped_key = NULL, kek_id = NULL, "
                       "erased_at = now() WHERE person_ref = %s", (ref,))
        other = vaults()
        shower = threading.Thread(target=lambda: (other.set_display({ref: {"name": "张**"}}),
                                                  done.set()))
        shower.start()
        assert not done.wait(0.5)  # waits for the erasure
        eraser.execute("DELETE FROM person_display WHERE person_ref = %s", (ref,))
        eraser.commit()
    shower.join(5)
    assert done.is_set()
    assert vault.display([ref]) == {ref: ERASED_MASK}
