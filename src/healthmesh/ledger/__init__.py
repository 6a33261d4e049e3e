"""Ledger: the pure core of the transparency log (RFC 9162 Merkle tree, C2SP signed notes,
checkpoints, cosignatures and the tlog-witness decision). Plain data in and out: no database and
no web imports, so the storage adapter and the HTTP layer can be written (and tested) apart."""
