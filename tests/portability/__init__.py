"""The portability check: does the shipped bundle give the same hashtags on aarch64 as on x86-64?

``tests/portability/arm64.sh`` installs the checkout on the x86-64 host and, under qemu-user emulation, in an
aarch64 Debian root, runs ``hashtag predict --json`` on the same photos on both sides and uses this package
on each side for what it records, then on the host to compare and report. Not installed with hashtag: the
script runs it from the checkout's copy (``PYTHONPATH=<checkout>/tests python -m portability``) with the
installed hashtag beside it, in the base install on either machine. One module per job:

    photos   select-photos CORPUS DEST [--n 20] [--extra FILE ...]   the fixed photo set, photos.tsv
    records  env OUT.json; peak-rss OUT.json --key KEY -- CMD ...      each side's machine and memory records
    compare  compare REF.jsonl CAND.jsonl --out OUT.json [--tolerance 0.02]   the verdict of one run
    report   report RESULTS_DIR                                          summary.json and README.md

Nothing here measures or reports time: under emulation it says nothing about the speed of a real board.
"""

# Reported beside the verdict: the largest per-tag probability difference still "within" (``compare``).
DEFAULT_TOLERANCE = 0.02
