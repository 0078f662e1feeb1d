/*
 * The contract lifecycle as one table: each operation, the states it may
 * start from, where it leads, who may trigger it and the permission the
 * caller's roles must grant. Every state change in the service goes
 * through ct_transition_check(); docs/contracts.md prints this table.
 */
#include "dcms/arena.h"
#include "contracts/contracts_int.h"

#define S(x) (1u << (x))

static const char *const status_names[CT_STATUS_COUNT] = {
    [CT_DRAFT] = "draft",           [CT_PENDING_SIGNATURE] = "pending_signature",
    [CT_ACTIVE] = "active",         [CT_SUSPENDED] = "suspended",
    [CT_TERMINATED] = "terminated", [CT_EXPIRED] = "expired",
};

static const struct ct_transition table[CT_OP_COUNT] = {
    [CT_OP_SUBMIT] = {CT_OP_SUBMIT, S(CT_DRAFT), CT_PENDING_SIGNATURE, CT_BY_PARTY | CT_BY_ADMIN,
                      "contracts:update"},
    [CT_OP_SIGN] = {CT_OP_SIGN, S(CT_PENDING_SIGNATURE), CT_PENDING_SIGNATURE, CT_BY_PARTY,
                    "contracts:sign"},
    [CT_OP_ACTIVATE] = {CT_OP_ACTIVATE, S(CT_PENDING_SIGNATURE), CT_ACTIVE,
                        CT_BY_PARTY | CT_BY_ADMIN, "contracts:activate"},
    [CT_OP_SUSPEND] = {CT_OP_SUSPEND, S(CT_ACTIVE), CT_SUSPENDED, CT_BY_PROVIDER | CT_BY_ADMIN,
                       "contracts:suspend"},
    [CT_OP_RESUME] = {CT_OP_RESUME, S(CT_SUSPENDED), CT_ACTIVE, CT_BY_PROVIDER | CT_BY_ADMIN,
                      "contracts:suspend"},
    [CT_OP_TERMINATE] = {CT_OP_TERMINATE, S(CT_ACTIVE) | S(CT_SUSPENDED), CT_TERMINATED,
                         CT_BY_PARTY | CT_BY_ADMIN, "contracts:terminate"},
    [CT_OP_EXPIRE] = {CT_OP_EXPIRE, S(CT_ACTIVE) | S(CT_SUSPENDED), CT_EXPIRED, CT_BY_SYSTEM, NULL},
    [CT_OP_EDIT] = {CT_OP_EDIT, S(CT_DRAFT) | S(CT_PENDING_SIGNATURE), CT_DRAFT,
                    CT_BY_PARTY | CT_BY_ADMIN, "contracts:update"},
    [CT_OP_DELETE] = {CT_OP_DELETE, S(CT_DRAFT), CT_DRAFT, CT_BY_PARTY | CT_BY_ADMIN,
                      "contracts:delete"},
};

static const char *const op_names[CT_OP_COUNT] = {
    [CT_OP_SUBMIT] = "submit",   [CT_OP_SIGN] = "sign",     [CT_OP_ACTIVATE] = "activate",
    [CT_OP_SUSPEND] = "suspend", [CT_OP_RESUME] = "resume", [CT_OP_TERMINATE] = "terminate",
    [CT_OP_EXPIRE] = "expire",   [CT_OP_EDIT] = "edit",     [CT_OP_DELETE] = "delete",
};

const char *ct_status_name(enum ct_status s)
{
    return (unsigned)s < CT_STATUS_COUNT ? status_names[s] : "unknown";
}

bool ct_status_parse(const char *s, enum ct_status *out)
{
    for (unsigned i = 0; s && i < CT_STATUS_COUNT; i++) {
        if (strcmp(status_names[i], s) == 0) {
            *out = (enum ct_status)i;
            return true;
        }
    }
    return false;
}

const char *ct_op_name(enum ct_op op)
{
    return (unsigned)op < CT_OP_COUNT ? op_names[op] : "unknown";
}

const struct ct_transition *ct_transition_of(enum ct_op op)
{
    return (unsigned)op < CT_OP_COUNT ? &table[op] : NULL;
}

enum dcms_err ct_transition_check(enum ct_op op, enum ct_status from, struct dcms_errinfo *ei)
{
    const struct ct_transition *t = ct_transition_of(op);
    if (!t)
        return dcms_err_set(ei, DCMS_ERR_INTERNAL, NULL);
    if (t->from & S(from))
        return DCMS_OK;
    char allowed[160];
    size_t off = 0;
    allowed[0] = '\0';
    for (unsigned i = 0; i < CT_OP_COUNT; i++) {
        /* What a client can ask for: the system's expiry is not one of them. */
        if (i == CT_OP_EXPIRE || !(table[i].from & S(from)))
            continue;
        off += (size_t)snprintf(allowed + off, sizeof(allowed) - off, "%s%s", off ? ", " : "",
                                op_names[i]);
        if (off >= sizeof(allowed))
            break;
    }
    const char *what = off ? allowed : "nothing (final state)";
    enum dcms_err e =
        dcms_err_set(ei, DCMS_ERR_CONFLICT, "cannot %s a contract that is %s; allowed: %s",
                     op_names[op], status_names[from], what);
    dcms_err_field(ei, "status", "is %s; allowed: %s", status_names[from], what);
    return e;
}
