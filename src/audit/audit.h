/*
 * The offline verifier tool of the audit module (main.c). Its route
 * handlers are declared with the others in src/http/handlers.h.
 */
#ifndef DCMS_AUDIT_CLI_H
#define DCMS_AUDIT_CLI_H

/* `dcmsd audit verify FILE --public-key K`: checks an export offline. */
int dcms_audit_cli(int argc, char **argv);

#endif
