"""``hashtag tag``: the ensemble's keywords written into photo metadata (XMP sidecars or the photos' own XMP/IPTC)."""
