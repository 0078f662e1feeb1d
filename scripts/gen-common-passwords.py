#!/usr/bin/env python3
"""Writes src/iam/common-passwords.txt: obvious passwords that dcms refuses.

Generated, not copied: keyboard walks, words with digits and years, repeated
characters and sequences, lowercase, one per line, sorted. Only candidates of
12 characters or more matter (shorter ones fail the length rule anyway), but
the list keeps them all so the rule does not depend on the other.
Run: scripts/gen-common-passwords.py > src/iam/common-passwords.txt
"""
words = ["password", "passw0rd", "p@ssword", "p@ssw0rd", "letmein", "welcome", "admin",
         "administrator", "qwerty", "iloveyou", "sunshine", "princess", "football", "baseball",
         "dragon", "monkey", "master", "shadow", "superman", "trustno1", "changeme", "secret",
         "login", "default", "dcms", "contract", "contracts", "enclave", "summer", "winter",
         "spring", "autumn", "hello", "abc123", "starwars", "whatever", "freedom", "computer",
         "internet", "service", "manager", "company", "database", "postgres", "sqlite"]
walks = ["qwertyuiop", "asdfghjkl", "zxcvbnm", "qwertyuiopasdfghjkl", "1qaz2wsx3edc",
         "1q2w3e4r5t6y", "qazwsxedcrfv", "q1w2e3r4t5y6", "zaq12wsxcde3", "1qazxsw23edc",
         "qwerty123456", "asdfghjkl123", "azertyuiop", "qwertzuiop", "1234qwerasdf",
         "qwer1234asdf", "poiuytrewq", "mnbvcxzlkjh", "0987654321", "9876543210"]
out = set(walks)
seq = "12345678901234567890"
for n in range(6, 21):
    out.add(seq[:n])
    out.add("abcdefghijklmnopqrstuvwxyz"[:n])
for c in "0123456789abcdefghijklmnopqrstuvwxyz!*.":
    for n in (8, 10, 12, 14, 16):
        out.add(c * n)
for w in words:
    out.add(w)
    out.add(w * 2)
    for suffix in ["1", "12", "123", "1234", "12345", "123456", "1234567", "12345678", "!",
                   "1!", "123!", "!!", "01", "007", "69", "99", "2000"]:
        out.add(w + suffix)
    for year in range(1990, 2031):
        out.add(w + str(year))
        out.add(w + str(year) + "!")
for year in range(1950, 2031):
    out.add(str(year) * 3)
print("\n".join(sorted(out)))
