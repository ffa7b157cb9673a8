"""The personal-data vault against a real PostgreSQL: values sealed with a key per person open
again, in any process; erasing the key (crypto-shredding) makes them unreadable everywhere
within the key cache's time-to-live, and nothing more can be sealed for that person."""

from __future__ import annotations

import time

import psycopg
import pytest

from tuoyu_shared.personal_data import DEFAULT_KEY_TTL, PersonalDataVault

SECRET = "test-secret"
ID_NUMBER = "110101199003074514"
TINY_TTL = 0.2


@pytest.fixture
def database(fresh_database) -> str:
    return fresh_database("vault", migrated="kit")


@pytest.fixture
def vaults(database):
    """A factory of vaults on the test's database (each like another process), closed after."""
    made: list[PersonalDataVault] = []

    def make(secret: str = SECRET, **kwargs) -> PersonalDataVault:
        vault = PersonalDataVault(database, secret, **kwargs)
        made.append(vault)
        return vault

    yield make
    for vault in made:
        vault.close()


def keys_table(database: str) -> dict[str, bytes | None]:
    with psycopg.connect(database) as conn:
        return {ref: None if key is None else bytes(key) for ref, key in conn.execute(
            "SELECT person_ref, data_key FROM personal_data_keys").fetchall()}


def test_seal_and_open_round_trip(vaults, database):
    vault = vaults()
    ref = vault.person_ref(ID_NUMBER)
    sealed = vault.seal(ref, ID_NUMBER, "110101********4514")
    assert set(sealed) == {"ref", "sealed", "masked"}
    assert (sealed["ref"], sealed["masked"]) == (ref, "110101********4514")
    assert ID_NUMBER not in sealed["sealed"]
    assert vault.open(sealed) == ID_NUMBER
    assert vault.seal(ref, ID_NUMBER, "m")["sealed"] != sealed["sealed"]  # a fresh nonce
    person = vault.seal_person(ref, {"name": ("张三丰", "张**"), "phone": ("13912345678",
                                                                      "139****5678")})
    assert person["ref"] == ref and person["name"]["masked"] == "张**"
    assert vault.open(person["name"]) == "张三丰"
    other = vaults()  # another process with the same secret
    assert other.open(sealed) == ID_NUMBER and other.open(person["phone"]) == "13912345678"
    assert other.open({"ref": ref, "masked": "张**"}) is None  # a mask alone opens nothing
    assert list(keys_table(database)) == [ref]  # one key per person


def test_erased_person_no_longer_opens_in_the_same_vault(vaults):
    vault = vaults()
    ref = vault.person_ref(ID_NUMBER)
    sealed = vault.seal(ref, ID_NUMBER, "m")
    assert vault.open(sealed) == ID_NUMBER
    vault.erase(ref)
    assert vault.open(sealed) is None
    assert vaults().open(sealed) is None


def test_erasure_in_another_process_is_seen_once_the_ttl_has_passed(vaults):
    running = vaults(key_ttl=TINY_TTL)
    ref = running.person_ref(ID_NUMBER)
    sealed = running.seal(ref, ID_NUMBER, "m")
    person = running.seal_person(ref, {"name": ("张三丰", "张**")})
    assert running.open(sealed) == ID_NUMBER  # its key is in the cache now
    vaults().erase(ref)  # another process erases the person
    time.sleep(TINY_TTL * 1.5)
    assert running.open(sealed) is None
    assert running.open(person["name"]) is None
    with pytest.raises(PermissionError, match=f"personal data of {ref} was erased"):
        running.seal(ref, ID_NUMBER, "m")


def test_the_key_cache_lives_for_its_ttl(vaults):
    assert DEFAULT_KEY_TTL == 60.0
    assert vaults().key_ttl == DEFAULT_KEY_TTL
    with pytest.raises(ValueError):
        vaults(key_ttl=-1)


@pytest.mark.parametrize("seal", ["seal", "seal_person"])
def test_sealing_for_an_erased_person_raises_permission_error(vaults, seal):
    vault = vaults()
    ref = vault.person_ref(ID_NUMBER)
    vault.seal(ref, ID_NUMBER, "m")
    vault.erase(ref)  # the key is cached as erased in this vault

    def seal_now(v: PersonalDataVault) -> None:
        if seal == "seal":
            v.seal(ref, ID_NUMBER, "m")
        else:
            v.seal_person(ref, {"name": ("张三丰", "张**")})

    for v in (vault, vaults()):  # the same process, and another one
        with pytest.raises(PermissionError, match=f"personal data of {ref} was erased"):
            seal_now(v)


def test_an_import_sealing_for_an_erased_person_gets_permission_error(vaults):
    """The bulk path: ensure_keys first (caching the erasure), then seal_person per row."""
    erased_ref = vaults().person_ref(ID_NUMBER)
    vaults().seal(erased_ref, ID_NUMBER, "m")
    vaults().erase(erased_ref)
    importer = vaults()
    refs = [importer.person_ref(f"11010119900307{i:04d}") for i in range(3)] + [erased_ref]
    importer.ensure_keys(refs)
    for ref in refs[:3]:
        assert importer.open(importer.seal_person(ref, {"name": ("李四", "李*")})["name"]) == "李四"
    with pytest.raises(PermissionError, match=f"personal data of {erased_ref} was erased"):
        importer.seal_person(erased_ref, {"name": ("张三丰", "张**")})


def test_erasing_someone_without_a_key_stops_any_process_sealing_for_them(vaults, database):
    vault = vaults()
    ref = vault.person_ref(ID_NUMBER)
    vault.erase(ref)
    assert keys_table(database) == {ref: None}
    with pytest.raises(PermissionError):
        vaults().seal(ref, ID_NUMBER, "m")


def test_ensure_keys_creates_many_keys_at_once_and_keeps_existing_ones(vaults, database):
    first = vaults()
    known = first.person_ref(ID_NUMBER)
    sealed = first.seal(known, ID_NUMBER, "m")
    before = keys_table(database)[known]
    importer = vaults()
    refs = [importer.person_ref(f"11010119900307{i:04d}") for i in range(200)]
    importer.ensure_keys([*refs, known, *refs[:10]])  # duplicates are fine
    table = keys_table(database)
    assert set(table) == {*refs, known}
    assert all(len(table[r]) == 32 for r in refs)  # AES-256 keys
    assert len({table[r] for r in refs}) == len(refs)  # one key per person
    assert table[known] == before  # an existing key is never replaced
    assert importer.open(sealed) == ID_NUMBER
    importer.ensure_keys(refs)  # again: nothing changes
    assert keys_table(database) == table
    other = vaults()
    for ref in refs[:5]:
        assert other.open(importer.seal(ref, "v", "m")) == "v"


def test_keyed_hash_is_stable_for_a_secret_and_differs_with_another(vaults, fresh_database):
    one, same = vaults(), PersonalDataVault(fresh_database("vault2", migrated="kit"), SECRET)
    try:
        assert one.person_ref(ID_NUMBER) == same.person_ref(ID_NUMBER)
        assert one.lookup_hash("phone", "13912345678") == same.lookup_hash("phone",
                                                                            "13912345678")
    finally:
        same.close()
    ref = one.person_ref(ID_NUMBER)
    assert len(ref) == 32 and int(ref, 16) >= 0 and ID_NUMBER not in ref
    assert one.person_ref("110101199003074522") != ref
    other = vaults("another-secret")
    assert other.person_ref(ID_NUMBER) != ref
    assert other.lookup_hash("phone", "13912345678") != one.lookup_hash("phone",
                                                                        "13912345678")
    assert one.lookup_hash("name", "13912345678") != one.lookup_hash("phone", "13912345678")


def test_production_refuses_the_development_key(monkeypatch):
    from tuoyu_shared.config import ConfigurationError, settings_for

    monkeypatch.setenv("TUOYU_ENVIRONMENT", "production")
    monkeypatch.delenv("TUOYU_PERSONAL_DATA_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="TUOYU_PERSONAL_DATA_KEY"):
        settings_for("registration")
    monkeypatch.setenv("TUOYU_PERSONAL_DATA_KEY", "short")
    with pytest.raises(ConfigurationError, match="at least 32"):
        settings_for("registration")
    monkeypatch.setenv("TUOYU_PERSONAL_DATA_KEY", "k" * 40)
    assert settings_for("registration").personal_data_key == "k" * 40
    monkeypatch.setenv("TUOYU_ENVIRONMENT", "development")
    monkeypatch.delenv("TUOYU_PERSONAL_DATA_KEY")
    assert settings_for("registration").personal_data_key  # the development default
