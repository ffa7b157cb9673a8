"""Registration service: the system of record for every childcare provider (托育机构) in the
district, from registration and filing (备案) to deregistration (注销)."""
