"""Per-case keys (record format 2): wrapping a case key to its readers and to k of n
recovery custodians (`wrap`), and the keyring's shard refs that git does not keep forever
(`ref`). See docs/design/record-format-2.md."""
