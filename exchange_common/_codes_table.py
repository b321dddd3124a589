"""The data behind :mod:`exchange_common.codes`: one row per reason code.

Each row is ``(code, category, peer text, operator hint)``. The category is one of the values
of :class:`exchange_common.codes.Category`; it decides the exit code. The category follows
the error class the code is raised with (so the exit code in the registry is the one the CLIs
return); the codes raised with more than one class are listed in :data:`MIXED_CLASSES`.

Peer texts are sent to other parties: one short sentence, never personal data, never a path,
a serial, a limit or any other internal. Operator hints say what to check or do.

Edit this table, then regenerate ``docs/reason-codes.md``::

    python -m exchange_common.codes --markdown > docs/reason-codes.md
"""

from __future__ import annotations

__all__ = ["MIXED_CLASSES", "TABLE"]

# Category values (see exchange_common.codes.Category).
_PEER = "peer input"
_LOCAL = "local input"
_CA = "CA state"
_NET = "transport"
_STORE = "store"
_FAULT = "node fault"

TABLE: tuple[tuple[str, str, str, str], ...] = (
    # --- generic defaults of the error classes (exchange_common.errors) ----------------------
    (
        "E_INTERNAL",
        _FAULT,
        "The node could not complete the operation.",
        "A fault in the software or its environment: read the node's log and report it.",
    ),
    (
        "E_PEER",
        _PEER,
        "The data received is unacceptable.",
        "Read the cause in the log; ask the sending party to correct and resend.",
    ),
    (
        "E_INPUT",
        _LOCAL,
        "The request is invalid.",
        "Correct the command's arguments or input file as the message says.",
    ),
    (
        "E_CA",
        _CA,
        "The certificate authority cannot perform the operation.",
        "Check the CA directory and the certificate records with `exchange-pki list`.",
    ),
    (
        "E_TRANSPORT",
        _NET,
        "The connection failed.",
        "Check the network path, the node address and port, and the SSH settings.",
    ),
    (
        "E_STORE",
        _STORE,
        "The node's state store failed.",
        "Check that the state store (SQLite file or PostgreSQL URL) is reachable and intact.",
    ),
    # --- bundles: format and cryptography (pki.bundle) ---------------------------------------
    (
        "E_FORMAT",
        _PEER,
        "The bundle or file is malformed.",
        "For a received bundle: ask the sender to reseal it with a current client. For a "
        "local file: check its type and contents (CSV, XLSX, Parquet or a sealed bundle).",
    ),
    (
        "E_VERSION",
        _PEER,
        "The bundle format version is not supported.",
        "Sender and receiver run incompatible software versions: upgrade the older one.",
    ),
    (
        "E_ALGORITHM",
        _PEER,
        "The bundle uses an unsupported algorithm.",
        "Ask the sender to reseal with a supported key type and a current client.",
    ),
    (
        "E_LIMIT",
        _PEER,
        "The bundle exceeds a size limit.",
        "Split the data into smaller bundles, or raise the limit on both sides if agreed.",
    ),
    (
        "E_TRUNCATED",
        _PEER,
        "The bundle is truncated.",
        "The file was cut short in transfer or on disk: send or copy it again.",
    ),
    (
        "E_SIGNATURE",
        _PEER,
        "The bundle signature is invalid.",
        "The bundle was altered or damaged after signing: obtain a fresh copy from the sender.",
    ),
    (
        "E_DECRYPT",
        _PEER,
        "The bundle could not be decrypted.",
        "Check that the bundle was sealed for this recipient's current certificate and key.",
    ),
    (
        "E_MANIFEST",
        _PEER,
        "The bundle contents do not match its manifest.",
        "The bundle was damaged or altered: ask the sender to reseal and resend it.",
    ),
    (
        "E_RECIPIENT",
        _PEER,
        "The bundle is not addressed to this recipient.",
        "Ask the sender to seal for the right recipient certificate (e.g. the node's pinned one).",
    ),
    (
        "E_NOT_NODE",
        _PEER,
        "The bundle is not signed by the expected node.",
        "A pulled file is not signed by the pinned node certificate: do not use it; "
        "check the node certificate pinned at init with the node administrator.",
    ),
    # --- certificates and CRLs (pki.verify, pki.identity) ------------------------------------
    (
        "E_CERT_FORMAT",
        _PEER,
        "The certificate is malformed.",
        "Check that the file is a PEM or DER X.509 certificate issued by the ministry CA.",
    ),
    (
        "E_CHAIN",
        _PEER,
        "The certificate does not chain to a trusted root.",
        "Check the trust store (ministry root and intermediate) and the certificate's issuer.",
    ),
    (
        "E_EXPIRED",
        _PEER,
        "The certificate or bundle has expired.",
        "An expired certificate needs renewal by the ministry; an expired bundle must be "
        "resealed by its sender. Check the local clock too.",
    ),
    (
        "E_NOT_YET_VALID",
        _PEER,
        "The certificate or bundle is not valid yet.",
        "Check the clocks of sender and receiver; wait until the certificate's start date.",
    ),
    (
        "E_REVOKED",
        _PEER,
        "The certificate has been revoked.",
        "The department needs a new certificate from the ministry; do not accept its bundles.",
    ),
    (
        "E_CRL_MISSING",
        _PEER,
        "The certificate cannot be checked for revocation.",
        "No CRL for the issuer is installed here: install the current CRL from the ministry.",
    ),
    (
        "E_CRL_STALE",
        _PEER,
        "The revocation list used for checking is out of date.",
        "Install the current CRL from the ministry (its next-update time has passed).",
    ),
    (
        "E_CRL_INVALID",
        _PEER,
        "The revocation list signature is invalid.",
        "The installed CRL is not signed by its issuer: fetch a genuine CRL from the ministry.",
    ),
    (
        "E_KEY_USAGE",
        _PEER,
        "The certificate is not fit for this use.",
        "The certificate has the wrong role or key usage (e.g. a department certificate where "
        "a node certificate is required): use the certificate issued for this role.",
    ),
    (
        "E_IDENTITY",
        _PEER,
        "The certificate does not carry the expected exchange identity.",
        "Check that the certificate belongs to the department in question and was issued by "
        "the ministry CA with a valid department code.",
    ),
    (
        "E_TRUST",
        _LOCAL,
        "No trusted root is configured to check the certificate.",
        "Install the ministry root certificate in the trust store (node home or client dir).",
    ),
    # --- node-level checks of a verified bundle (exchange_server.pipeline.decisions) ------------
    (
        "E_REPLAY",
        _PEER,
        "The bundle was already received.",
        "The same bundle id was uploaded again: check the first receipt instead of resending.",
    ),
    (
        "E_SIGNER",
        _PEER,
        "The bundle is signed by another department than the uploader.",
        "A department may upload only bundles signed with its own certificate.",
    ),
    (
        "E_SENDER",
        _PEER,
        "The sender is not an active registered department.",
        "Register the department on the node, or re-enable it, before it sends bundles.",
    ),
    (
        "E_ADDRESS",
        _PEER,
        "The connection comes from an address not registered for the sender.",
        "Register the department's address (`--allow-ip`) or connect from a registered one.",
    ),
    # --- SFTP front: connection and login refusals (exchange_server.front) -------------------
    (
        "E_UNKNOWN_ADDRESS",
        _PEER,
        "The connection was refused.",
        "The client address is in no registered network: check the department registry.",
    ),
    (
        "E_BANNED",
        _PEER,
        "The connection was refused.",
        "The address is banned for security.ban_seconds after repeated failed logins: wait, "
        "then check the client's credentials.",
    ),
    (
        "E_BUSY",
        _NET,
        "The node is busy; try again later.",
        "The node reached its maximum number of connections (sftp.max_connections).",
    ),
    (
        "E_UNKNOWN_USER",
        _PEER,
        "The login was refused.",
        "The login name is not a registered department code.",
    ),
    (
        "E_DISABLED",
        _PEER,
        "The login was refused.",
        "The department is disabled in the node's registry.",
    ),
    (
        "E_CREDENTIALS",
        _PEER,
        "The login was refused.",
        "The SSH key or certificate offered is not registered for the department, or is "
        "revoked or expired.",
    ),
    (
        "E_UNAVAILABLE",
        _FAULT,
        "The node cannot check the login now; try again later.",
        "The admission check failed inside the node (store or trust store unavailable): read "
        "the node's log.",
    ),
    (
        "E_TOO_LARGE",
        _PEER,
        "The upload exceeds the maximum upload size.",
        "Split the data into smaller bundles, or raise security.max_upload_bytes on the node.",
    ),
    (
        "E_QUOTA",
        _PEER,
        "The upload exceeds the department's quota.",
        "The department's stored uploads fill its quota: wait for processing, or raise the "
        "department's quota (security.default_quota_bytes).",
    ),
    (
        "E_IO",
        _LOCAL,
        "A file could not be read or written.",
        "A file could not be read or written: check the path, permissions and free disk space.",
    ),
    # --- formal review of queries and data pushes (exchange_server.pipeline.workflow) --------
    (
        "E_APPLICATION",
        _PEER,
        "The query application is incomplete or malformed.",
        "Check the application fields (business type, persons, resources, items, time range, "
        "result format) against the client guide.",
    ),
    (
        "E_BUSINESS_TYPE",
        _PEER,
        "The business type is not in the catalog.",
        "Use a business type listed in the node's published resource catalog.",
    ),
    (
        "E_COUNT",
        _PEER,
        "The number of persons stated does not match the persons table.",
        "Correct the application's person count or the persons table so they agree.",
    ),
    (
        "E_AUTHORIZATION",
        _PEER,
        "Some persons lack an authorization reference; the query is suspended.",
        "Obtain and record each person's signed authorization (先授权、后核对), then resend.",
    ),
    (
        "E_ID",
        _PEER,
        "Some ID numbers are invalid.",
        "Correct the ID numbers that fail the GB 11643 check (length, check character, date).",
    ),
    (
        "E_NO_CATALOG",
        _PEER,
        "No resource catalog is published on this node.",
        "Publish a resource catalog on the node (`exchange-server catalog publish`).",
    ),
    (
        "E_UNKNOWN_RESOURCE",
        _PEER,
        "A requested resource is not in the catalog.",
        "Use a resource code from the node's published catalog.",
    ),
    (
        "E_NOT_SHARED",
        _PEER,
        "A requested resource is not shared.",
        "The catalog marks the resource as not shared (不予共享): it cannot be requested.",
    ),
    (
        "E_SCOPE",
        _PEER,
        "The department may not use this resource for this business type.",
        "Check the resource's sharing scope in the catalog, or request another resource.",
    ),
    (
        "E_ITEM",
        _PEER,
        "Some requested items are unknown or not visible to the department.",
        "Request only items the catalog lists for the resource and shares with the department.",
    ),
    (
        "E_PROVIDER",
        _PEER,
        "Only the providing department may push data for this resource.",
        "Data pushes must come from the resource's provider named in the catalog.",
    ),
    (
        "E_TIME_RANGE",
        _LOCAL,
        "The time range is invalid.",
        "Use YYYY/MM/DD, YYYY/MM/DD-YYYY/MM/DD or empty (latest); resources without a time "
        "item take only an empty range.",
    ),
    (
        "E_SCHEMA",
        _LOCAL,
        "The data table does not fit the resource's schema.",
        "Check the header line: item names of the resource, the key column and all required "
        "columns, one table per bundle.",
    ),
    (
        "E_ROWS",
        _LOCAL,
        "The table has no valid rows to store.",
        "Fix the rejected rows (the report lists them), or use --valid-only to send the rest.",
    ),
    (
        "E_ENCODING",
        _LOCAL,
        "The table is not in the expected text encoding.",
        "Save the table as UTF-8, or give the right --encoding (utf-8, gb18030, gbk).",
    ),
    (
        "E_NO_DATA",
        _LOCAL,
        "No data has been pushed for a requested resource.",
        "The provider has not pushed data for the resource yet: ask it to push.",
    ),
    # --- row-level rejection reasons in data receipts (exchange_server.data.datasets) --------
    (
        "E_REQUIRED",
        _PEER,
        "A required value is missing.",
        "Fill the named required item (or the key) in every row.",
    ),
    (
        "E_INTEGER",
        _PEER,
        "A value is not a whole number.",
        "Correct the named integer item in the rejected rows.",
    ),
    (
        "E_DECIMAL",
        _PEER,
        "A value is not a decimal number.",
        "Correct the named decimal item in the rejected rows.",
    ),
    (
        "E_DATE",
        _PEER,
        "A value is not a valid date.",
        "Write dates as YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD.",
    ),
    (
        "E_CODE",
        _PEER,
        "A value is not one of the allowed codes.",
        "Use only the code values the catalog lists for the named item.",
    ),
    (
        "E_VALUE",
        _PEER,
        "A value is invalid.",
        "Correct the named item in the rejected rows.",
    ),
    # --- client ID-number checks (exchange_common.idnumber) ---------------------------------
    (
        "ID_LENGTH",
        _LOCAL,
        "An ID number has the wrong length.",
        "A citizen ID number has 18 characters (15 for first-generation numbers).",
    ),
    (
        "ID_CHARS",
        _LOCAL,
        "An ID number contains invalid characters.",
        "An ID number is 17 digits followed by a digit or X (15 digits for old numbers).",
    ),
    (
        "ID_CHECKSUM",
        _LOCAL,
        "An ID number's check character does not match.",
        "Probably a typing error: compare the number with the source document.",
    ),
    (
        "ID_REGION",
        _LOCAL,
        "An ID number has an invalid region code.",
        "The first two digits must be a province-level code (GB/T 2260).",
    ),
    (
        "ID_DATE",
        _LOCAL,
        "An ID number has an invalid birth date.",
        "The birth date must be a real date, not in the future and not before 1890.",
    ),
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

#: Codes raised with error classes of different exit codes. The registry names the usual
#: class's exit code; the CLI exits with the class actually raised. Value: why.
MIXED_CLASSES: dict[str, str] = {
    "E_CERT_FORMAT": "a certificate file the operator gives is an InputError (exit 3)",
    "E_DUPLICATE": "a live certificate in the CA is a CAError (exit 4)",
    "E_FORMAT": "a local table or dataset file of the wrong type is an InputError (exit 3)",
    "E_HOST_KEY": "an unloadable host key on the node is an InputError (exit 3)",
    "E_IDENTITY": "a certificate of the wrong department given locally is an InputError (exit 3)",
    "E_ITEM": "an unknown item asked of the node's engine locally is an InputError (exit 3)",
    "E_LIMIT": "sealing over a limit locally is an InputError (exit 3)",
    "E_NOT_FOUND": "a department without a live certificate in the CA is a CAError (exit 4)",
    "E_PASSPHRASE": "no CA passphrase, or a mismatched confirmation, is an InputError (exit 3)",
    "E_SCHEMA": "the formal review of a query refuses a bundle with it (peer)",
    "E_TIME_RANGE": "the formal review of a query refuses a bundle with it (peer)",
    "E_TRUST": "an empty trust store met while verifying a certificate is a CertificateError "
    "(exit 1)",
    "E_ENGINE": "raised as InputError (exit 3), though the cause is the node's engine",
}
