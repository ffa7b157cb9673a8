"""Registration commands and queries (the application layer)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from tuoyu_registration.domain import (
    DomainRuleViolated,
    Institution,
    Nature,
    ProviderKind,
    check_credit_code_matches_nature,
    check_places,
    institution_id_for,
)
from tuoyu_shared.application import ServiceApplication
from tuoyu_shared.config import Settings
from tuoyu_shared.personal_data import PersonalDataVault
from tuoyu_shared.validation import (
    FieldError,
    ValidationFailed,
    Validator,
    mask_name,
    mask_phone,
    mask_resident_id,
)


class InstitutionNotFound(LookupError):
    pass


class RegistrationApplication(ServiceApplication):
    name = "Registration"
    service_name = "registration"

    def __init__(self, settings: Settings | None = None, env: dict[str, str] | None = None):
        super().__init__(settings, env)
        self.vault = PersonalDataVault(self.settings.database_url,
                                       self.settings.personal_data_key)

    @staticmethod
    def _read_person(v: Validator, prefix: str) -> tuple[str, str, str]:
        return (v.text(f"{prefix}.name", max_length=50), v.resident_id(f"{prefix}.id_number"),
                v.phone(f"{prefix}.phone"))

    def _seal_person(self, name: str, id_number: str, phone: str) -> dict[str, Any]:
        """Seal a person's data under their own key (written only once input is valid)."""
        ref = self.vault.person_ref(id_number)
        return {
            "ref": ref,
            "name": self.vault.seal(ref, name, mask_name(name)),
            "id_number": self.vault.seal(ref, id_number, mask_resident_id(id_number)),
            "phone": self.vault.seal(ref, phone, mask_phone(phone)),
        }

    # Commands
    def file_institution(self, data: dict[str, Any]) -> UUID:
        """Enter a provider in the register (登记备案). Refuses bad input, writing nothing."""
        v = Validator(data)
        name = v.text("name", max_length=100)
        credit_code = v.credit_code("credit_code")
        nature = v.choice("nature", [n.value for n in Nature])
        kind = v.choice("kind", [k.value for k in ProviderKind])
        district = v.text("district", max_length=50)
        street = v.text("street", max_length=50)
        address = v.text("address", max_length=200)
        places = v.integer("places", min_value=1, max_value=2000)
        person = self._read_person(v, "person_in_charge")
        v.check()
        if self._exists(institution_id_for(credit_code)):
            raise DomainRuleViolated(
                f"an institution with credit code {credit_code} is already filed", state="filed")
        try:
            check_credit_code_matches_nature(credit_code, Nature(nature))
            check_places(ProviderKind(kind), places)
        except FieldError as e:
            raise ValidationFailed([e]) from None
        institution = Institution.file(
            name=name, credit_code=credit_code, nature=Nature(nature), kind=ProviderKind(kind),
            district=district, street=street, address=address, places=places,
            person_in_charge=self._seal_person(*person),
        )
        try:
            self.save(institution)
        except IntegrityError:
            raise DomainRuleViolated(
                f"an institution with credit code {credit_code} is already filed",
                state="filed") from None
        return institution.id

    # Queries
    def _exists(self, institution_id: UUID) -> bool:
        return bool(self.recorder.select_events(institution_id, limit=1))

    def _get(self, institution_id: UUID | str) -> Institution:
        try:
            return self.repository.get(UUID(str(institution_id)))
        except (AggregateNotFoundError, ValueError):
            raise InstitutionNotFound(f"no institution {institution_id}") from None

    def institution(self, institution_id: UUID | str) -> dict[str, Any]:
        """The public facts of an institution; personal data masked."""
        inst = self._get(institution_id)
        return {
            "institution_id": str(inst.id),
            "name": inst.name,
            "credit_code": inst.credit_code,
            "nature": inst.nature,
            "kind": inst.kind,
            "district": inst.district,
            "street": inst.street,
            "address": inst.address,
            "places": inst.places,
            "status": inst.status,
            "person_in_charge": inst.person_in_charge["name"]["masked"],
            "version": inst.version,
            "filed_at": inst.created_on.isoformat(),
        }

    def institution_by_credit_code(self, credit_code: str) -> dict[str, Any]:
        return self.institution(institution_id_for(credit_code.strip().upper()))
