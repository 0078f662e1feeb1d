/* The process-wide cancellation flag (include/dcms/cancel.h). */
#include <stdatomic.h>

#include "dcms/cancel.h"

static atomic_bool cancelled;

void dcms_cancel_all(void)
{
    atomic_store(&cancelled, true);
}

bool dcms_cancel_requested(void)
{
    return atomic_load_explicit(&cancelled, memory_order_relaxed);
}
