"""Reason-code rows of :mod:`exchange_common.codes`, part 2: the operator's side.

Local input, CA state, transport and store. Row format and rules:
:mod:`exchange_common._codes_table`.
"""

from __future__ import annotations

from exchange_common._codes_peer import _CA, _FAULT, _LOCAL, _NET, _STORE

__all__ = ["ROWS"]

ROWS: tuple[tuple[str, str, str, str], ...] = (
    # --- local input: files, keys, names -----------------------------------------------------
    (
        "E_NOT_FOUND",
        _LOCAL,
        "The requested item was not found.",
        "Check the path, department, catalog version or bundle id named in the message.",
    ),
    (
        "E_EXISTS",
        _LOCAL,
        "The target already exists.",
        "Nothing was overwritten: choose another target or remove the existing one first.",
    ),
    (
        "E_ANSWERED",
        _LOCAL,
        "The node already answered this bundle: there is nothing to resend.",
        "See its verdict with `exchange-client status`; to send the files again, push them as a "
        "new bundle.",
    ),
    (
        "E_NOT_UPLOADED",
        _LOCAL,
        "The bundle was sealed but never reached the node, so no receipt can come.",
        "Upload the kept bundle with `exchange-client resend BUNDLE_ID` (add --wait for the "
        "receipt).",
    ),
    (
        "E_SENT_MISSING",
        _LOCAL,
        "The sealed copy of the bundle is gone or changed.",
        "The sent/ policy may have removed it ([retention] sent_days): push the files again as a "
        "new bundle.",
    ),
    (
        "E_NAME",
        _LOCAL,
        "A member name is invalid or used twice.",
        "Give each file in the bundle a distinct plain name (no folders, no control characters).",
    ),
    (
        "E_SIZE_CHANGED",
        _LOCAL,
        "A file changed while it was being sealed.",
        "Do not modify input files during sealing; seal again.",
    ),
    (
        "E_KEY_FORMAT",
        _LOCAL,
        "The key is not usable.",
        "Give a PEM private key (EC P-256/P-384 or RSA) that fits the certificate.",
    ),
    (
        "E_KEY_MISMATCH",
        _LOCAL,
        "The key does not belong to the certificate.",
        "Give the private key that was used for this certificate's request.",
    ),
    (
        "E_CSR",
        _LOCAL,
        "The certificate signing request is invalid.",
        "Make a new CSR with `exchange-client init` (EC P-256/P-384 or RSA of 2048+ bits).",
    ),
    (
        "E_CRL_FORMAT",
        _LOCAL,
        "The revocation list file is malformed.",
        "Give a PEM or DER CRL file as published by the ministry CA.",
    ),
    (
        "E_DEPT_CODE",
        _LOCAL,
        "The department code is invalid.",
        "Use 1-32 letters, digits, '_' or '-', starting with a letter or digit.",
    ),
    (
        "E_IP",
        _LOCAL,
        "The network address is invalid or not allowed.",
        "Give IP addresses or CIDRs without host bits, inside the networks the certificate "
        "registers.",
    ),
    (
        "E_SERIAL",
        _LOCAL,
        "The certificate serial is invalid.",
        "Give the serial in hexadecimal, as `exchange-pki list` shows it.",
    ),
    (
        "E_REASON",
        _LOCAL,
        "The revocation reason is unknown.",
        "Choose one of the revocation reasons the command lists.",
    ),
    (
        "E_SSH_KEY",
        _LOCAL,
        "The SSH public key is invalid.",
        "Give an OpenSSH public key line (e.g. the contents of id_ed25519.pub).",
    ),
    (
        "E_DUPLICATE",
        _LOCAL,
        "The entry is already registered.",
        "The department, key or live certificate exists already: revoke or renew it instead.",
    ),
    (
        "E_NODE_CERT",
        _LOCAL,
        "The certificate is a node certificate.",
        "Revoking a node's certificate stops that node's exchange with every department: check "
        "the serial with `exchange-pki list`; if you mean it, repeat with --allow-node.",
    ),
    (
        "E_USAGE",
        _LOCAL,
        "The command was used incorrectly.",
        "Check the command's options (--help): a required option or a valid format is missing.",
    ),
    (
        "E_MODE",
        _LOCAL,
        "The push mode is unknown.",
        "Use one of the push modes the message lists (full or increment).",
    ),
    (
        "E_COLUMNS",
        _LOCAL,
        "The table's columns are missing or ambiguous.",
        "The table needs a header row with exactly one ID-number column and one name column.",
    ),
    (
        "E_CONFIG",
        _LOCAL,
        "The configuration is invalid.",
        "Correct the configuration file named in the message (see docs/configuration.md).",
    ),
    (
        "E_CATALOG",
        _LOCAL,
        "The resource catalog is invalid.",
        "Correct the catalog TOML file named in the message (see docs/catalog.md).",
    ),
    (
        "E_QUERY_STATE",
        _LOCAL,
        "The query's resource is not in a state that allows this decision.",
        "Only a relayed resource still waiting for its answer can be extended or terminated: "
        "see `exchange-server query show`.",
    ),
    (
        "E_CALENDAR",
        _LOCAL,
        "A working-day deadline cannot be computed yet.",
        "A deadline or a date needs a year with no working-day data: import the State "
        "Council's holiday schedule for that year with `exchange-server calendar import` "
        "(see docs/working-days.md).",
    ),
    (
        "E_CALENDAR_FILE",
        _LOCAL,
        "The working-day calendar file is invalid.",
        "Correct the year and date named in the message in the calendar file (see "
        "docs/working-days.md); nothing from the file was imported.",
    ),
    (
        "E_RULES",
        _LOCAL,
        "The comparison rules are invalid.",
        "Correct HOME/rules.toml (see docs/comparison-rules.md).",
    ),
    (
        "E_UNKNOWN_RULE",
        _LOCAL,
        "The comparison rule is unknown.",
        "Use a rule name listed by `exchange-server compare list`.",
    ),
    (
        "E_UNKNOWN_DEPT",
        _LOCAL,
        "The department is not registered.",
        "Register the department on the node first (`exchange-server dept add`).",
    ),
    (
        "E_REFUSED",
        _LOCAL,
        "The comparison rule may not see any of its targets.",
        "Fix the rule's owner or targets so the catalog shares the data with the owner.",
    ),
    (
        "E_DATA_KEY",
        _LOCAL,
        "The node data key is missing or invalid.",
        "Restore HOME/node/data.key from the node's backup; never create a new one for "
        "existing data.",
    ),
    (
        "E_TAMPERED",
        _LOCAL,
        "A published catalog file was modified or cannot be read.",
        "Published catalogs are immutable: restore the file from backup and audit the change.",
    ),
    (
        "E_HOST_KEY",
        _NET,
        "The SSH host key could not be verified.",
        "On the client: the node's host key changed or is unknown; confirm its fingerprint "
        "with the node administrator. On the node: check the host key file.",
    ),
    (
        "E_NODE_PIN",
        _LOCAL,
        "The node certificate is not the pinned one.",
        "Re-run `exchange-client init` with the node certificate the administrator gave you.",
    ),
    (
        "E_NO_CERT",
        _LOCAL,
        "The department has no certificate yet.",
        "Send the CSR to the ministry, then `exchange-client init --import-cert DEPT.pem`.",
    ),
    (
        "E_ENGINE",
        _FAULT,
        "The comparison could not be completed.",
        "The comparison engine (DuckDB) failed: read the cause in the log and report it.",
    ),
    (
        "E_INSTALL",
        _LOCAL,
        "The node software is installed incompletely.",
        "Install matching duckdb and duckdb-extension-httpfs versions "
        "(docs/decisions/0003-datasets-at-rest.md).",
    ),
    # --- CA state (pki.ca, pki.cadb) ---------------------------------------------------------
    (
        "E_NO_CA",
        _CA,
        "The certificate authority is not set up.",
        "The directory holds no CA: run `exchange-pki init` or give the right --ca-dir.",
    ),
    (
        "E_CA_DB",
        _CA,
        "The certificate authority's records are unavailable or inconsistent.",
        "The CA database or configuration is busy, damaged or incomplete: restore from backup.",
    ),
    (
        "E_PASSPHRASE",
        _CA,
        "The key passphrase is missing or wrong.",
        "Set the passphrase environment variable named in the message (or type it at the "
        "prompt); a wrong passphrase leaves the key unusable until the right one is given.",
    ),
    (
        "E_UNKNOWN_SERIAL",
        _CA,
        "No certificate with this serial was issued.",
        "Check the serial with `exchange-pki list`.",
    ),
    (
        "E_ALREADY_REVOKED",
        _CA,
        "The certificate is already revoked.",
        "Nothing to do; publish a fresh CRL if peers do not see the revocation yet.",
    ),
    (
        "E_CONCURRENT",
        _CA,
        "The certificate authority changed during the operation.",
        "Another operator changed these certificates while you were confirming; nothing was "
        "done: run the command again and check what it shows.",
    ),
    # --- transport (exchange_client.transport) -----------------------------------------------
    (
        "E_UNREACHABLE",
        _NET,
        "The node cannot be reached.",
        "Check the node address and port, DNS, firewalls and that the node is running.",
    ),
    (
        "E_TIMEOUT",
        _NET,
        "The node did not answer in time.",
        "The node may be busy: retry later, or `exchange-client pull` to fetch a late receipt.",
    ),
    (
        "E_CONNECTION_LOST",
        _NET,
        "The connection to the node was lost.",
        "Retry; if it recurs, check the network path and the node's log.",
    ),
    (
        "E_LOGIN",
        _NET,
        "The login was refused.",
        "Check the department's certificate or SSH key and the registered addresses; the node "
        "administrator sees the reason in the node's log.",
    ),
    (
        "E_SFTP",
        _NET,
        "The node refused the file operation.",
        "Check the remote path and the department's permissions on the node.",
    ),
    (
        "E_LISTEN",
        _NET,
        "The node cannot accept connections.",
        "The listen address or port is in use or not permitted: check node.toml [sftp].",
    ),
    (
        "E_START",
        _NET,
        "The demo node did not start.",
        "Read the demo node's log named in the message.",
    ),
    (
        "E_DEMO",
        _NET,
        "The demonstration run failed.",
        "Read the message: a client step failed or the node refused a demo bundle.",
    ),
    # --- store -------------------------------------------------------------------------------
    (
        "E_AUDIT",
        _STORE,
        "The audit trail failed verification.",
        "An audit event is missing or altered: preserve the database and inform the inspector.",
    ),
    (
        "E_STATE",
        _STORE,
        "The client state file is damaged or unreadable.",
        "Restore the client state file from backup, or check its permissions.",
    ),
)
