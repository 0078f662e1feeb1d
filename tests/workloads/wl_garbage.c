/*
 * Test workload: answers each attestation request with something a hostile
 * workload might send: an oversized length, an unknown frame type, a
 * truncated frame and then silence. dcmsd must refuse each and stay up.
 */
#include <string.h>
#include <unistd.h>

int main(void)
{
    static const unsigned char replies[][9] = {
        {0xff, 0xff, 0xff, 0xff, 4, 0, 0, 0, 0}, /* 4 GiB frame */
        {0, 0, 0, 5, 99, 1, 2, 3, 4},            /* unknown type */
        {0, 0, 0, 1, 3, 0, 0, 0, 0},             /* NSM_RESP in the wrong direction */
        {0, 0, 0, 0, 0, 0, 0, 0, 0},             /* length 0 */
    };
    unsigned char buf[4096];
    for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
        if (read(3, buf, sizeof(buf)) <= 0)
            return 1;
        if (write(3, replies[i], sizeof(replies[i])) != (ssize_t)sizeof(replies[i]))
            return 1;
    }
    while (read(3, buf, sizeof(buf)) > 0)
        ;
    return 0;
}
