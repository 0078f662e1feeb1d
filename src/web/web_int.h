/*
 * The web UI's files, embedded in dcmsd: the table web/build.mjs generates
 * (build/gen/web_assets_gen.c) from the esbuild bundle. Private to src/web/.
 */
#ifndef DCMS_WEB_INT_H
#define DCMS_WEB_INT_H

#include <stddef.h>

struct dcms_web_asset {
    const char *name; /* "index.html", or "<name>.<hash>.<ext>" served under /assets/ */
    const char *content_type;
    const unsigned char *bytes;
    size_t len;
};

/* index.html first, then the hashed assets; immutable, so thread-safe. */
extern const struct dcms_web_asset dcms_web_assets[];
extern const size_t dcms_web_assets_count;

#endif
