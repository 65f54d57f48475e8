"""The store schema: numbered migrations (NNNN_name.sql), applied in order; shipped as lettingo_cli.migrations."""
