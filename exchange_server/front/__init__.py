"""The node's front: what departments connect to (the SFTP server and its admission gate, the
drop folder for removable media) and the ``serve`` process that starts them."""
