/*
 * The layering of src/iam (see src/iam/README.md): no include circle among
 * its private headers, counted the way a reader meets it. A header H is
 * "implemented by" every .c file of the folder that defines a function H
 * declares; H depends on every private header it includes and every
 * private header one of its implementing files includes. A cycle in that
 * graph is a layer that reaches back above itself (before the layering:
 * iam_int.h, implemented by iam.c, which included mfa_int.h, which
 * included iam_int.h; iam_cred.h, whose handlers sat in iam_signkey.c
 * beside its services). Services never include dcms/http.h: only files
 * named *_http* may.
 *
 * The parser is deliberately plain: declarations and definitions start at
 * column 0 (clang-format keeps them there), the name is the identifier
 * before the line's first '('.
 */
#include "testutil.h"

#include <ctype.h>
#include <dirent.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILES 128
#define MAX_NAMES 512

struct src_file {
    char name[256];
    bool header;
    char *text;
    char *names[MAX_NAMES]; /* declared (header) or defined (.c) functions */
    size_t nnames;
    int includes[MAX_FILES]; /* indexes of the folder's headers it includes */
    size_t nincludes;
};

struct tree {
    struct src_file f[MAX_FILES];
    size_t n;
};

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int find_file(const struct tree *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->f[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* The identifier just before the first '(' of a column-0 line, or NULL. */
static char *function_name(const char *line, size_t len)
{
    const char *paren = memchr(line, '(', len);
    if (!paren)
        return NULL;
    const char *end = paren;
    while (end > line && end[-1] == ' ')
        end--;
    const char *start = end;
    while (start > line && (isalnum((unsigned char)start[-1]) || start[-1] == '_'))
        start--;
    if (start == end || isdigit((unsigned char)*start))
        return NULL;
    char *out = malloc((size_t)(end - start) + 1);
    assert_non_null(out);
    memcpy(out, start, (size_t)(end - start));
    out[end - start] = '\0';
    return out;
}

static void scan_lines(struct tree *t, struct src_file *sf, const char *prefix)
{
    const char *p = sf->text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char inc[128];
        if (sscanf(p, "#include \"%127[^\"]\"", inc) == 1) {
            const char *base =
                strncmp(inc, prefix, strlen(prefix)) == 0 ? inc + strlen(prefix) : inc;
            int h = find_file(t, base);
            if (h >= 0 && t->f[h].header && sf->nincludes < MAX_FILES)
                sf->includes[sf->nincludes++] = h;
        } else if (len && (isalpha((unsigned char)*p) || *p == '_') &&
                   strncmp(p, "static ", 7) != 0 && strncmp(p, "typedef ", 8) != 0 &&
                   strncmp(p, "struct ", 7) != 0 && strncmp(p, "enum {", 6) != 0 &&
                   (sf->header || p[len - 1] != ';')) {
            char *name = function_name(p, len);
            if (name && sf->nnames < MAX_NAMES)
                sf->names[sf->nnames++] = name;
            else
                free(name);
        }
        p += len + (nl ? 1 : 0);
    }
}

/* Reads every .c and .h of `dir`; `prefix` is how files include it ("iam/"). */
static void tree_load(struct tree *t, const char *dir, const char *prefix)
{
    memset(t, 0, sizeof(*t));
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open %s", dir);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!ends_with(de->d_name, ".c") && !ends_with(de->d_name, ".h"))
            continue;
        assert_true(t->n < MAX_FILES);
        struct src_file *sf = &t->f[t->n++];
        snprintf(sf->name, sizeof(sf->name), "%s", de->d_name);
        sf->header = ends_with(de->d_name, ".h");
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        sf->text = dcms_test_read_file(path, NULL);
    }
    closedir(d);
    for (size_t i = 0; i < t->n; i++)
        scan_lines(t, &t->f[i], prefix);
}

static void tree_free(struct tree *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->f[i].text);
        for (size_t j = 0; j < t->f[i].nnames; j++)
            free(t->f[i].names[j]);
    }
}

static bool implements(const struct src_file *c, const struct src_file *h)
{
    for (size_t i = 0; i < c->nnames; i++)
        for (size_t j = 0; j < h->nnames; j++)
            if (strcmp(c->names[i], h->names[j]) == 0)
                return true;
    return false;
}

/* edge[a][b]: header a depends on header b. */
static void build_edges(const struct tree *t, bool (*edge)[MAX_FILES])
{
    for (size_t h = 0; h < t->n; h++) {
        if (!t->f[h].header)
            continue;
        for (size_t k = 0; k < t->f[h].nincludes; k++)
            edge[h][t->f[h].includes[k]] = true;
        for (size_t c = 0; c < t->n; c++) {
            if (t->f[c].header || !implements(&t->f[c], &t->f[h]))
                continue;
            for (size_t k = 0; k < t->f[c].nincludes; k++)
                if ((size_t)t->f[c].includes[k] != h)
                    edge[h][t->f[c].includes[k]] = true;
        }
    }
}

/* Depth-first search; on a cycle writes it ("a.h -> b.h -> a.h") into out and returns true. */
static bool dfs(const struct tree *t, bool (*edge)[MAX_FILES], int v, int *state, int *stack,
                int depth, char *out, size_t cap)
{
    state[v] = 1;
    stack[depth] = v;
    for (size_t w = 0; w < t->n; w++) {
        if (!edge[v][w])
            continue;
        if (state[w] == 1) {
            size_t used = 0;
            int from = 0;
            while (stack[from] != (int)w)
                from++;
            for (int i = from; i <= depth; i++)
                used += (size_t)snprintf(out + used, cap - used, "%s -> ", t->f[stack[i]].name);
            snprintf(out + used, cap - used, "%s", t->f[w].name);
            return true;
        }
        if (state[w] == 0 && dfs(t, edge, (int)w, state, stack, depth + 1, out, cap))
            return true;
    }
    state[v] = 2;
    return false;
}

/* A cycle among dir's private headers, or false. */
static bool find_cycle(const char *dir, const char *prefix, char *out, size_t cap)
{
    static struct tree t;
    static bool edge[MAX_FILES][MAX_FILES];
    tree_load(&t, dir, prefix);
    memset(edge, 0, sizeof(edge));
    build_edges(&t, edge);
    int state[MAX_FILES] = {0}, stack[MAX_FILES];
    bool found = false;
    for (size_t v = 0; v < t.n && !found; v++)
        if (t.f[v].header && state[v] == 0)
            found = dfs(&t, edge, (int)v, state, stack, 0, out, cap);
    tree_free(&t);
    return found;
}

static void test_iam_no_include_cycle(void **state)
{
    (void)state;
    char cycle[2048] = "";
    if (find_cycle(DCMS_SOURCE_DIR "/src/iam", "iam/", cycle, sizeof(cycle)))
        fail_msg("src/iam has an include cycle: %s", cycle);
}

static void test_iam_services_without_http(void **state)
{
    (void)state;
    static struct tree t;
    tree_load(&t, DCMS_SOURCE_DIR "/src/iam", "iam/");
    for (size_t i = 0; i < t.n; i++) {
        bool http_file = ends_with(t.f[i].name, "_http.c") || strstr(t.f[i].name, "_http") != NULL;
        if (!http_file && strstr(t.f[i].text, "#include \"dcms/http.h\""))
            fail_msg("src/iam/%s includes dcms/http.h (only *_http files may)", t.f[i].name);
        if (!http_file && strstr(t.f[i].text, "dcms_http_"))
            fail_msg("src/iam/%s calls an HTTP helper (only *_http files may)", t.f[i].name);
    }
    tree_free(&t);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The check itself finds a circle made through an implementing file, and passes a clean one. */
static void test_cycle_check_finds_circle(void **state)
{
    (void)state;
    char dir[] = "/tmp/dcms-layers-XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_file(dir, "low.h", "int low_fn(void);\n");
    write_file(dir, "low.c", "#include \"m/low.h\"\nint low_fn(void)\n{\n    return 1;\n}\n");
    write_file(dir, "high.h", "#include \"m/low.h\"\nint high_fn(void);\n");
    write_file(dir, "high.c",
               "#include \"m/high.h\"\nint high_fn(void)\n{\n    return low_fn();\n}\n");
    char cycle[512] = "";
    assert_false(find_cycle(dir, "m/", cycle, sizeof(cycle)));
    /* low.c (implementing low.h) reaches up to high.h, which includes low.h. */
    write_file(dir, "low.c", "#include \"m/high.h\"\nint low_fn(void)\n{\n    return 1;\n}\n");
    assert_true(find_cycle(dir, "m/", cycle, sizeof(cycle)));
    assert_non_null(strstr(cycle, "high.h"));
    assert_non_null(strstr(cycle, "low.h"));
    const char *names[] = {"low.h", "low.c", "high.h", "high.c"};
    for (size_t i = 0; i < 4; i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_iam_no_include_cycle),
    cmocka_unit_test(test_iam_services_without_http),
    cmocka_unit_test(test_cycle_check_finds_circle),
};

DCMS_TEST_MAIN(tests)
