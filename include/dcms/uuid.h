/* Identifiers: UUIDv7 (RFC 9562), time-ordered so that new rows index well. */
#ifndef DCMS_UUID_H
#define DCMS_UUID_H

#include <stdbool.h>

#define DCMS_UUID_STRLEN 37

/* A fresh UUIDv7 in lowercase canonical form. Thread-safe. */
void dcms_uuid_v7(char out[DCMS_UUID_STRLEN]);

/* True for any canonical lowercase or uppercase 8-4-4-4-12 hex UUID. */
bool dcms_uuid_valid(const char *s);

#endif
