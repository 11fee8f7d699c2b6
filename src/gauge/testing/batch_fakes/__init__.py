"""Fake provider batch endpoints on 127.0.0.1, for the batch translators' tests.

anthropic.py      Message Batches (FakeAnthropicBatches)
gemini.py         Gemini API batch mode (FakeGeminiBatches)
mistral.py        Files + batch jobs (FakeMistralBatches)
openai_style.py   Files + batches as Groq and Together speak them
                  (FakeGroqBatches, FakeTogetherBatches)
_base.py          the jobs, the knobs (polls, end, answered, rate_limited,
                  bad_requests) and the submission counts they share
"""
