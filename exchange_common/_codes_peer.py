"""Reason-code rows of :mod:`exchange_common.codes`, part 1: what peers can be told about.

Generic defaults, bundles, certificates, the node's checks, the SFTP front, formal review, row
rejections and ID numbers. Row format and rules: :mod:`exchange_common._codes_table`.
"""

from __future__ import annotations

__all__ = ["ROWS"]

# Category values (see exchange_common.codes.Category); _codes_local uses them too.
_PEER = "peer input"
_LOCAL = "local input"
_CA = "CA state"
_NET = "transport"
_STORE = "store"
_FAULT = "node fault"

ROWS: tuple[tuple[str, str, str, str], ...] = (
    # --- generic defaults of the error classes (exchange_common.errors) ----------------------
    (
        "E_INTERNAL",
        _FAULT,
        "The node could not complete the operation.",
        "A fault in the software or its environment: read the node's log and report it.",
    ),
    (
        "E_NODE_FAULT",
        _FAULT,
        "The node could not process this bundle and used none of it; you may send it again.",
        "Processing failed limits.max_attempts times with a node-side error (the log names "
        "it); the bundle was quarantined and its id released, so the same bundle can be resent "
        "once the cause is fixed.",
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
        "The node reached its maximum number of connections (limits.max_connections), or of "
        "connections not yet logged in (limits.max_preauth_connections in total, "
        "limits.max_preauth_per_address from the client's address).",
    ),
    (
        "E_SPARSE",
        _PEER,
        "The upload has holes: part of the file was never written.",
        "The client wrote past the end of the file (offsets with gaps); upload the file again "
        "with an ordinary client.",
    ),
    (
        "E_SILENT",
        _PEER,
        "The connection was closed: it did not ask to log in in time.",
        "No login request within limits.handshake_timeout_seconds of connecting; counts as a "
        "failed login (repeated, it bans the address).",
    ),
    (
        "E_AUTH_TRIES",
        _PEER,
        "Too many authentication failures.",
        "The connection offered more than limits.max_auth_tries refused credentials (an SSH "
        "agent with many keys: choose the key with IdentitiesOnly / -i); each counts as a "
        "failed login.",
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
        "E_CHECKPOINT",
        _PEER,
        "An audit checkpoint failed verification.",
        "The checkpoint note is malformed or not signed by the node's key: obtain the node's "
        "certificate and a checkpoint straight from the node's administrator.",
    ),
    (
        "E_EXTRACT",
        _PEER,
        "An audit extract failed verification.",
        "An event or proof in the extract does not match the node's signed checkpoint: the "
        "extract was altered or is not the node's; ask the node's administrator for a new one.",
    ),
    (
        "E_TOO_LARGE",
        _PEER,
        "The upload exceeds the maximum upload size.",
        "Split the data into smaller bundles, or raise limits.max_upload_bytes on the node.",
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
        "Only the providing department may push data for this resource or answer its relays.",
        "Data pushes and relay answers must come from the resource's provider named in the catalog.",
    ),
    # --- relayed queries: the provider's answer (respond) -----------------------------------
    (
        "E_RELAY_UNKNOWN",
        _PEER,
        "The answer names no relay the node sent.",
        "Answer with the relay's bundle id as `exchange-client pull` shows it (kind relay).",
    ),
    (
        "E_RELAY_CLOSED",
        _PEER,
        "The relay is already answered or was ended; the answer is not used.",
        "Nothing to do for this relay; see `exchange-client status` for the query's state.",
    ),
    (
        "E_NOT_ASKED",
        _PEER,
        "The answer names a person or an item that the relay did not ask for.",
        "Answer only the persons of the relay's list and only the items it names; resend.",
    ),
    (
        "E_SUPPLEMENT",
        _PEER,
        "The supplement does not complete a suspended query of the sender.",
        "Send the missing authorization references for the persons of your suspended query "
        "only (the receipt counts what is wrong); see `exchange-client status QUERY_ID`.",
    ),
    (
        "E_ANSWER_VALUES",
        _PEER,
        "The answer holds values that are not valid for their item types.",
        "Correct the values counted by reason in the receipt (dates, codes, numbers, ID numbers) and resend.",
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
)
