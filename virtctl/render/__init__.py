"""Output for people and programs: plans, reports, tables, exported specs.

report.py renders plans, reports and `get` rows (text and JSON); storage.py the rows of
`get pools` / `get volumes`; specs.py the loaded specs of `virtctl render`; export.py and
export_storage.py turn live objects back into specs (`virtctl export`).

Pure but for `export.write_specs`. May import virtctl.reconciler (plan and report types),
the converters and the foundation modules; never virtctl.cli, virtctl.api or a driver.
"""
