/*
 * Cancellation of long operations at shutdown. When the drain deadline
 * (DCMS_SHUTDOWN_TIMEOUT_MS) is about to pass with requests still running,
 * main.c (through dcms_http_server_drain) calls dcms_cancel_all; long loops
 * (the audit chain verification, say) check dcms_cancel_requested between
 * batches and give up with DCMS_ERR_UNAVAILABLE, so their request is answered
 * (503, Connection: close) and the process exits on time.
 */
#ifndef DCMS_CANCEL_H
#define DCMS_CANCEL_H

#include <stdbool.h>

void dcms_cancel_all(void);
bool dcms_cancel_requested(void);

#endif
