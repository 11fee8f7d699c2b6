"""Provider batch jobs: requests collected into provider batch endpoints (about half price).

api.py        the contract: BatchAPI (per provider), BatchLedger (the journal), records
config.py     BatchConfig, and how `GenerateConfig.batch` normalises
ids.py        deterministic custom ids (cache key digest + occurrence)
stage.py      the pipeline stage (cache -> batch -> retry) and the one-line refusal
collector.py  requests in, jobs out: split, flush, places, intents, polls, ledger, re-attach
errors.py     BatchJobFailed, BatchItemFailed
cancel.py     cancel jobs a stopped run left in flight
"""
