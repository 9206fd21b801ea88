"""Test doubles of the services hashtag talks to. They live with the tests, so the wheel never holds them and
the product never imports them; only the tests and, from a source checkout, bench_bot use them."""
