"""A reader's personal data across every package (subscribers, sends, bounces, mail records):
erasure sits above them all, so none of them needs to know about the others."""
