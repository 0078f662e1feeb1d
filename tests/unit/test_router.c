/*
 * The router (src/http/router.c): matching the real route table (exact
 * paths, HEAD as GET, unknown paths, wrong methods and the Allow list), and
 * the template matcher path_matches() with parameters, and the query-string
 * check (dcms_http_query_only, dcms_route_owns_query). The table has no
 * parameterised route yet, so this file includes router.c to reach the
 * static matcher; the library's copy of router.o is then never linked.
 */
#include "testutil.h"

#include "dcms/arena.h"
#include "http/router.c"

struct fixture {
    struct dcms_arena *arena;
    struct dcms_http_req req;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->arena = dcms_arena_new(0);
    f->req.arena = f->arena;
    *state = f;
    return f->arena ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    dcms_arena_free(f->arena);
    free(f);
    return 0;
}

static size_t route_index(const char *method, const char *path)
{
    for (size_t i = 0; i < dcms_routes_count; i++)
        if (strcmp(dcms_routes[i].method, method) == 0 && strcmp(dcms_routes[i].path, path) == 0)
            return i;
    fail_msg("no route %s %s in routes.def", method, path);
    return SIZE_MAX;
}

static void exact_match(void **state)
{
    struct fixture *f = *state;
    char allow[64] = "untouched";
    size_t idx = SIZE_MAX;
    assert_int_equal(dcms_router_match("GET", "/healthz", &f->req, &idx, allow, sizeof(allow)),
                     ROUTE_FOUND);
    assert_int_equal(idx, route_index("GET", "/healthz"));
    assert_int_equal(f->req.nparams, 0);

    assert_int_equal(
        dcms_router_match("GET", "/api/v1/system", &f->req, &idx, allow, sizeof(allow)),
        ROUTE_FOUND);
    assert_int_equal(idx, route_index("GET", "/api/v1/system"));
    assert_ptr_equal(dcms_routes[idx].handler, dcms_sys_info);

    assert_int_equal(
        dcms_router_match("POST", "/api/v1/canonicalize", &f->req, &idx, allow, sizeof(allow)),
        ROUTE_FOUND);
    assert_int_equal(idx, route_index("POST", "/api/v1/canonicalize"));
    assert_int_equal(dcms_routes[idx].max_body, DCMS_ROUTE_BODY_DEFAULT);

    /* Every row of the table matches itself. */
    for (size_t i = 0; i < dcms_routes_count; i++) {
        if (strchr(dcms_routes[i].path, '{'))
            continue;
        assert_int_equal(dcms_router_match(dcms_routes[i].method, dcms_routes[i].path, &f->req,
                                           &idx, allow, sizeof(allow)),
                         ROUTE_FOUND);
        assert_int_equal(idx, i);
    }
}

static void head_matches_get(void **state)
{
    struct fixture *f = *state;
    char allow[64];
    size_t idx = SIZE_MAX;
    assert_int_equal(dcms_router_match("HEAD", "/healthz", &f->req, &idx, allow, sizeof(allow)),
                     ROUTE_FOUND);
    assert_int_equal(idx, route_index("GET", "/healthz"));
    /* HEAD does not reach a POST-only route. */
    assert_int_equal(
        dcms_router_match("HEAD", "/api/v1/canonicalize", &f->req, &idx, allow, sizeof(allow)),
        ROUTE_BAD_METHOD);
}

static void unknown_path(void **state)
{
    struct fixture *f = *state;
    char allow[64];
    size_t idx = SIZE_MAX;
    static const char *const paths[] = {"/nope",    "",        "/healthzz",        "/health",
                                        "/HEALTHZ", "/api/v1", "/api/v1/system/x", "healthz",
                                        "//",       "/assets", "/assets/",         "/assets/a/b"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        if (dcms_router_match("GET", paths[i], &f->req, &idx, allow, sizeof(allow)) !=
            ROUTE_NO_PATH)
            fail_msg("GET \"%s\" matched", paths[i]);
        assert_int_equal(idx, SIZE_MAX);
    }
}

/* The web UI: its page at "/" only, and one asset name under /assets/. */
static void web_routes(void **state)
{
    struct fixture *f = *state;
    char allow[64];
    size_t idx = SIZE_MAX;
    assert_int_equal(dcms_router_match("GET", "/", &f->req, &idx, allow, sizeof(allow)),
                     ROUTE_FOUND);
    assert_string_equal(dcms_routes[idx].path, "/");
    assert_int_equal(
        dcms_router_match("GET", "/assets/app.0123.js", &f->req, &idx, allow, sizeof(allow)),
        ROUTE_FOUND);
    assert_string_equal(dcms_routes[idx].path, "/assets/{name}");
    assert_string_equal(dcms_http_req_param(&f->req, "name"), "app.0123.js");
    assert_int_equal(dcms_router_match("POST", "/", &f->req, &idx, allow, sizeof(allow)),
                     ROUTE_BAD_METHOD);
}

static void wrong_method(void **state)
{
    struct fixture *f = *state;
    char allow[64];
    size_t idx = SIZE_MAX;
    assert_int_equal(dcms_router_match("POST", "/healthz", &f->req, &idx, allow, sizeof(allow)),
                     ROUTE_BAD_METHOD);
    assert_string_equal(allow, "GET, HEAD");
    assert_int_equal(
        dcms_router_match("DELETE", "/api/v1/system", &f->req, &idx, allow, sizeof(allow)),
        ROUTE_BAD_METHOD);
    assert_string_equal(allow, "GET, HEAD");
    assert_int_equal(
        dcms_router_match("GET", "/api/v1/canonicalize", &f->req, &idx, allow, sizeof(allow)),
        ROUTE_BAD_METHOD);
    assert_string_equal(allow, "POST");
    /* Methods are case-sensitive (RFC 9110). */
    assert_int_equal(dcms_router_match("get", "/healthz", &f->req, &idx, allow, sizeof(allow)),
                     ROUTE_BAD_METHOD);

    /* A short Allow buffer is never overrun and stays a string. */
    char tiny[4];
    assert_int_equal(dcms_router_match("POST", "/healthz", &f->req, &idx, tiny, sizeof(tiny)),
                     ROUTE_BAD_METHOD);
    assert_true(strlen(tiny) < sizeof(tiny));
    assert_int_equal(idx, SIZE_MAX);
}

static void slashes_do_not_match(void **state)
{
    struct fixture *f = *state;
    char allow[64];
    size_t idx = SIZE_MAX;
    static const char *const paths[] = {"/healthz/",       "//healthz",       "/api//v1/system",
                                        "/api/v1/system/", "/api/v1//system", "/healthz//"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        if (dcms_router_match("GET", paths[i], &f->req, &idx, allow, sizeof(allow)) !=
            ROUTE_NO_PATH)
            fail_msg("GET \"%s\" matched", paths[i]);
}

static void param_captured(void **state)
{
    struct fixture *f = *state;
    const char *id = "0191f3a2-7b4c-7d1e-8f00-123456789abc";
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/contracts/%s", id);
    assert_true(path_matches("/api/v1/contracts/{id}", path, NULL));
    assert_true(path_matches("/api/v1/contracts/{id}", path, &f->req));
    assert_int_equal(f->req.nparams, 1);
    assert_string_equal(f->req.params[0].name, "id");
    assert_string_equal(f->req.params[0].value, id);
    assert_string_equal(dcms_http_req_param(&f->req, "id"), id);
    assert_null(dcms_http_req_param(&f->req, "other"));

    snprintf(path, sizeof(path), "/api/v1/contracts/%s/sign", id);
    assert_true(path_matches("/api/v1/contracts/{id}/sign", path, &f->req));
    assert_int_equal(f->req.nparams, 1);
    assert_string_equal(f->req.params[0].value, id);
    /* The suffix after the parameter must match too. */
    snprintf(path, sizeof(path), "/api/v1/contracts/%s/sig", id);
    assert_false(path_matches("/api/v1/contracts/{id}/sign", path, NULL));
    snprintf(path, sizeof(path), "/api/v1/contracts/%s", id);
    assert_false(path_matches("/api/v1/contracts/{id}/sign", path, NULL));

    /* Two parameters, and one that is not the last segment. */
    assert_true(
        path_matches("/api/v1/enclaves/{eid}/jobs/{jid}", "/api/v1/enclaves/e1/jobs/j-2", &f->req));
    assert_int_equal(f->req.nparams, 2);
    assert_string_equal(f->req.params[0].name, "eid");
    assert_string_equal(f->req.params[0].value, "e1");
    assert_string_equal(f->req.params[1].name, "jid");
    assert_string_equal(f->req.params[1].value, "j-2");

    /* A parameter takes the whole segment, whatever it holds. */
    assert_true(path_matches("/x/{v}", "/x/a.b%20c", &f->req));
    assert_string_equal(f->req.params[0].value, "a.b%20c");
}

static void param_empty_refused(void **state)
{
    struct fixture *f = *state;
    assert_false(path_matches("/api/v1/contracts/{id}", "/api/v1/contracts/", &f->req));
    assert_false(path_matches("/api/v1/contracts/{id}", "/api/v1/contracts", &f->req));
    assert_false(path_matches("/api/v1/contracts/{id}/sign", "/api/v1/contracts//sign", &f->req));
    assert_false(path_matches("/api/v1/contracts/{id}/sign", "/api/v1/contracts/sign", &f->req));
}

static void param_extra_segments_refused(void **state)
{
    struct fixture *f = *state;
    assert_false(path_matches("/api/v1/contracts/{id}", "/api/v1/contracts/a/b", &f->req));
    assert_false(path_matches("/api/v1/contracts/{id}", "/api/v1/contracts/a/", &f->req));
    assert_false(
        path_matches("/api/v1/contracts/{id}/sign", "/api/v1/contracts/a/sign/x", &f->req));
    assert_false(
        path_matches("/api/v1/contracts/{id}/sign", "/api/v1/contracts/a/b/sign", &f->req));
    assert_false(path_matches("/api/v1/contracts/{id}", "/api/v2/contracts/a", &f->req));
}

static void param_too_many_refused(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(DCMS_HTTP_MAX_PARAMS, 4);
    assert_true(path_matches("/{a}/{b}/{c}/{d}", "/1/2/3/4", &f->req));
    assert_int_equal(f->req.nparams, 4);
    assert_string_equal(f->req.params[3].name, "d");
    assert_string_equal(f->req.params[3].value, "4");
    assert_false(path_matches("/{a}/{b}/{c}/{d}/{e}", "/1/2/3/4/5", NULL));
    assert_false(path_matches("/{a}/{b}/{c}/{d}/{e}", "/1/2/3/4/5", &f->req));
}

static void param_out_of_memory(void **state)
{
    (void)state;
    /* Captures come from the request arena; a full one fails the match. */
    struct dcms_arena *a = dcms_arena_new(16);
    assert_non_null(a);
    assert_non_null(dcms_arena_alloc(a, 16));
    struct dcms_http_req req;
    memset(&req, 0, sizeof(req));
    req.arena = a;
    assert_true(path_matches("/x/{id}", "/x/1", NULL));
    assert_false(path_matches("/x/{id}", "/x/1", &req));
    dcms_arena_free(a);
}

/* A query string for dcms_http_query_only: the names, NULL-terminated. */
static void fake_each_query(void *conn, void (*fn)(void *ctx, const char *name), void *ctx)
{
    for (const char *const *n = conn; *n; n++)
        fn(ctx, *n);
}

static bool has_problem(const struct dcms_errinfo *ei, const char *field, const char *problem)
{
    for (size_t i = 0; i < ei->ndetails; i++)
        if (strcmp(ei->details[i].field, field) == 0 &&
            strcmp(ei->details[i].problem, problem) == 0)
            return true;
    return false;
}

static void query_only(void **state)
{
    struct fixture *f = *state;
    struct dcms_errinfo ei;
    static const char *const allowed[] = {"status", "limit", NULL};
    static const char *const good[] = {"status", "limit", NULL};
    static const char *const bad[] = {"stauts", "status", "status", "", NULL};
    f->req.ei = &ei;
    f->req.each_query = fake_each_query;

    dcms_errinfo_init(&ei, f->arena);
    f->req.conn = (void *)good;
    assert_true(dcms_http_query_only(&f->req, allowed));
    assert_int_equal(ei.code, DCMS_OK);

    dcms_errinfo_init(&ei, f->arena);
    f->req.conn = (void *)bad;
    assert_false(dcms_http_query_only(&f->req, allowed));
    assert_int_equal(ei.code, DCMS_ERR_VALIDATION);
    assert_int_equal(ei.ndetails, 3);
    assert_true(has_problem(&ei, "stauts", "unknown query parameter"));
    assert_true(has_problem(&ei, "status", "is given more than once"));
    assert_true(has_problem(&ei, "", "unknown query parameter"));

    /* NULL allowed: nothing is; no query at all is fine. */
    dcms_errinfo_init(&ei, f->arena);
    f->req.conn = (void *)good;
    assert_false(dcms_http_query_only(&f->req, NULL));
    assert_int_equal(ei.ndetails, 2);
    dcms_errinfo_init(&ei, f->arena);
    f->req.each_query = NULL;
    assert_true(dcms_http_query_only(&f->req, NULL));
}

static void query_owners_listed(void **state)
{
    (void)state;
    assert_true(dcms_route_owns_query(&dcms_routes[route_index("GET", "/healthz")]));
    assert_true(dcms_route_owns_query(&dcms_routes[route_index("GET", "/api/v1/identities")]));
    assert_true(dcms_route_owns_query(&dcms_routes[route_index("GET", "/api/v1/audit/events")]));
    assert_false(dcms_route_owns_query(&dcms_routes[route_index("GET", "/api/v1/api-keys")]));
    assert_false(dcms_route_owns_query(&dcms_routes[route_index("GET", "/api/v1/auth/me")]));
    assert_false(
        dcms_route_owns_query(&dcms_routes[route_index("DELETE", "/api/v1/policies/{id}")]));
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(query_only, setup, teardown),
    cmocka_unit_test(query_owners_listed),
    cmocka_unit_test_setup_teardown(exact_match, setup, teardown),
    cmocka_unit_test_setup_teardown(head_matches_get, setup, teardown),
    cmocka_unit_test_setup_teardown(unknown_path, setup, teardown),
    cmocka_unit_test_setup_teardown(web_routes, setup, teardown),
    cmocka_unit_test_setup_teardown(wrong_method, setup, teardown),
    cmocka_unit_test_setup_teardown(slashes_do_not_match, setup, teardown),
    cmocka_unit_test_setup_teardown(param_captured, setup, teardown),
    cmocka_unit_test_setup_teardown(param_empty_refused, setup, teardown),
    cmocka_unit_test_setup_teardown(param_extra_segments_refused, setup, teardown),
    cmocka_unit_test_setup_teardown(param_too_many_refused, setup, teardown),
    cmocka_unit_test(param_out_of_memory),
};

DCMS_TEST_MAIN(tests)
