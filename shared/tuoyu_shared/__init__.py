"""Common machinery of the Tuoyu services: configuration, logs, the event envelope and its
catalogue of schemas, the relay, tracked consumers, validation and personal-data protection."""
