/* The Lua 5.4 module "dalle": libdalle from Lua (bindings/lua/README.md).
 *
 *     local dalle = require "dalle"
 *     local model <close> = dalle.open("model.dalle", {threads = 4})
 *     local ids = model:sample("a green triangle", {seed = 42, n = 2})
 *     dalle.save_png("out.png", model:decode(ids))
 *
 * Objects: dalle.Model (a dalle_ctx), dalle.Clip (a clip_ctx), dalle.Image
 * (float32 pixels [batch][3][height][width] in a userdata), dalle.Synth (a
 * generator of the synthetic world; dalle.judge reads its pictures back,
 * dalle.learn_bpe learns a vocabulary from captions). Handles are freed
 * by close(), by __close (a `<close>` variable leaving scope) or by __gc,
 * whichever comes first; a closed handle raises on use.
 *
 * Errors. Wrong Lua types and malformed options are ordinary Lua argument
 * errors (strings, from luaL_check* / luaL_argerror). A failing libdalle call
 * raises a dalle.Error table {status = -3, code = "DALLE_ERR_IO",
 * message = <dalle_last_error()>} whose tostring() is the library's message.
 *
 * Memory. Every buffer handed to the library is a userdata made with
 * lua_newuserdatauv (scratch on the Lua stack), and every C handle is stored
 * in its userdata before anything can raise, so a Lua error (a longjmp) never
 * leaks: the collector frees what is left. Lua code runs inside a library
 * call only in the progress callback, under lua_pcall.
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include <dalle/dalle.h>
#include <dalle/train.h>

#define MODEL_MT "dalle.Model"
#define CLIP_MT "dalle.Clip"
#define IMAGE_MT "dalle.Image"
#define ERROR_MT "dalle.Error"
#define TOKENIZER_MT "dalle.Tokenizer"
#define BUNDLE_MT "dalle.BundleHandle" /* internal: dalle.bundle()'s open file */
#define SYNTH_MT "dalle.Synth"
#define MERGES_MT "dalle.BpeMerges" /* internal: dalle.learn_bpe()'s result */

/* Largest batch the binding builds (the C calls accept 1 .. 2^20). */
#define MAX_BATCH (1 << 20)

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

static const char *const status_names[] = {
    "DALLE_OK",           "DALLE_ERR_INVALID_ARGUMENT", "DALLE_ERR_OUT_OF_MEMORY",
    "DALLE_ERR_IO",       "DALLE_ERR_FORMAT",           "DALLE_ERR_VERSION",
    "DALLE_ERR_CHECKSUM", "DALLE_ERR_NOT_FOUND",        "DALLE_ERR_MISMATCH",
    "DALLE_ERR_UNSUPPORTED", "DALLE_ERR_ABORTED",       "DALLE_ERR_BACKEND",
    "DALLE_ERR_TOO_LONG", "DALLE_ERR_NOT_IMPLEMENTED",
};
#define N_STATUS ((int)(sizeof status_names / sizeof status_names[0]))

static const char *status_name(int s)
{
    return (s <= 0 && -s < N_STATUS) ? status_names[-s] : "DALLE_ERR_UNKNOWN";
}

/* Raise the failure `s` of the call just made, with the library's message. */
static int raise_status(lua_State *L, dalle_status s)
{
    const char *msg = dalle_last_error();
    if (!msg || !*msg)
        msg = dalle_strerror(s);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, s);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, status_name(s));
    lua_setfield(L, -2, "code");
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
    luaL_setmetatable(L, ERROR_MT);
    return lua_error(L);
}

#define CHECK_STATUS(L, call)                  \
    do {                                       \
        dalle_status s_ = (call);              \
        if (s_ != DALLE_OK)                    \
            raise_status((L), s_);             \
    } while (0)

static int error_tostring(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "message");
    if (!lua_isstring(L, -1))
        lua_pushliteral(L, "dalle error");
    return 1;
}

/* "prefix" .. err and err .. "suffix" both give strings. */
static int error_concat(lua_State *L)
{
    for (int i = 1; i <= 2; i++)
        if (!lua_isstring(L, i)) {
            lua_pushcfunction(L, error_tostring);
            lua_pushvalue(L, i);
            lua_call(L, 1, 1);
            lua_replace(L, i);
        }
    lua_concat(L, 2);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

/* Scratch memory owned by a userdata left on the stack (freed by the GC). */
static void *scratch(lua_State *L, size_t count, size_t elem)
{
    if (elem && count > ((size_t)-1 >> 1) / elem)
        luaL_error(L, "dalle: buffer of %zu x %zu bytes is too large", count, elem);
    return lua_newuserdatauv(L, count * elem > 0 ? count * elem : 1, 0);
}

/* An integer argument within [lo, hi]. */
static lua_Integer check_int_range(lua_State *L, int arg, lua_Integer lo, lua_Integer hi)
{
    lua_Integer v = luaL_checkinteger(L, arg);
    if (v < lo || v > hi)
        luaL_argerror(L, arg, lua_pushfstring(L, "expected %I..%I, got %I", lo, hi, v));
    return v;
}

/* Raise unless every key of the option table at `arg` is in `allowed`. */
static void check_option_keys(lua_State *L, int arg, const char *const allowed[])
{
    lua_pushnil(L);
    while (lua_next(L, arg)) {
        lua_pop(L, 1);
        int ok = 0;
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -1);
            for (int i = 0; allowed[i] && !ok; i++)
                ok = !strcmp(k, allowed[i]);
        }
        if (!ok) {
            const char *k = luaL_tolstring(L, -1, NULL); /* stays below the buffer */
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            luaL_addstring(&b, "unknown option '");
            luaL_addstring(&b, k);
            luaL_addstring(&b, "' (expected one of:");
            for (int i = 0; allowed[i]; i++) {
                luaL_addchar(&b, ' ');
                luaL_addstring(&b, allowed[i]);
            }
            luaL_addchar(&b, ')');
            luaL_pushresult(&b);
            luaL_argerror(L, arg, lua_tostring(L, -1));
        }
    }
}

/* The option table at `arg` (nil or absent: an empty one, 0 returned). */
static int opt_table(lua_State *L, int arg, const char *const allowed[])
{
    if (lua_isnoneornil(L, arg))
        return 0;
    luaL_checktype(L, arg, LUA_TTABLE);
    check_option_keys(L, arg, allowed);
    return 1;
}

/* Raise: option `key` (its value at stack index `val`) is not `what`. */
static void option_error(lua_State *L, int arg, const char *key, int val, const char *what)
{
    val = lua_absindex(L, val);
    if (lua_type(L, val) == LUA_TNUMBER)
        luaL_tolstring(L, val, NULL);
    else if (lua_type(L, val) == LUA_TSTRING)
        lua_pushfstring(L, "'%s'", lua_tostring(L, val));
    else
        lua_pushstring(L, luaL_typename(L, val));
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be %s, got %s", key, what,
                                          lua_tostring(L, -1)));
}

/* A double as a float, out-of-range values as +-infinity (a plain cast
 * would be undefined behaviour); the library rejects what is not finite. */
static float to_float(double v)
{
    if (v > FLT_MAX)
        return HUGE_VALF;
    if (v < -FLT_MAX)
        return -HUGE_VALF;
    return (float)v;
}

static lua_Integer opt_integer(lua_State *L, int arg, int has, const char *key,
                               lua_Integer def, lua_Integer lo, lua_Integer hi)
{
    if (!has || lua_getfield(L, arg, key) == LUA_TNIL) {
        if (has)
            lua_pop(L, 1);
        return def;
    }
    int isint;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < lo || v > hi) {
        int val = lua_gettop(L);
        option_error(L, arg, key, val, lua_pushfstring(L, "an integer in %I..%I", lo, hi));
    }
    lua_pop(L, 1);
    return v;
}

static double opt_number(lua_State *L, int arg, int has, const char *key, double def)
{
    if (!has || lua_getfield(L, arg, key) == LUA_TNIL) {
        if (has)
            lua_pop(L, 1);
        return def;
    }
    int isnum;
    double v = (double)lua_tonumberx(L, -1, &isnum);
    if (!isnum)
        option_error(L, arg, key, -1, "a number");
    lua_pop(L, 1);
    return v;
}

/* Read a Lua sequence of integer ids at `idx` into dst[0 .. cap): returns its
 * length; longer than cap, holes, non-integers and values outside int32 are
 * argument errors (the library itself checks the vocabulary range). */
static int read_ids(lua_State *L, int idx, int arg, const char *what, int32_t *dst, int cap)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_argerror(L, arg, lua_pushfstring(L, "%s: table of ids expected, got %s", what,
                                              luaL_typename(L, idx)));
    lua_Integer n = luaL_len(L, idx);
    if (n > cap)
        luaL_argerror(L, arg, lua_pushfstring(L, "%s: %I ids, at most %d expected", what, n,
                                              cap));
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, idx, i);
        int isint;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (!isint || v < INT32_MIN || v > INT32_MAX)
            luaL_argerror(L, arg, lua_pushfstring(L, "%s[%I]: integer id expected, got %s", what,
                                                  i, isint ? "a value outside int32"
                                                           : luaL_typename(L, -1)));
        dst[i - 1] = (int32_t)v;
        lua_pop(L, 1);
    }
    return (int)n;
}

/* Is the value at idx a table whose first element is a table (a batch)? */
static int is_table_of_tables(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        return 0;
    int t = lua_geti(L, idx, 1);
    lua_pop(L, 1);
    return t == LUA_TTABLE;
}

/* Push a table of ids[0 .. n). */
static void push_ids(lua_State *L, const int32_t *ids, int n)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, ids[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

/* Push a table of `rows` tables of `cols` ids each. */
static void push_id_rows(lua_State *L, const int32_t *ids, int rows, int cols)
{
    lua_createtable(L, rows, 0);
    for (int r = 0; r < rows; r++) {
        push_ids(L, ids + (size_t)r * cols, cols);
        lua_rawseti(L, -2, r + 1);
    }
}

/* Push a table of `rows` tables of `cols` numbers each. */
static void push_float_rows(lua_State *L, const float *v, int rows, int cols)
{
    lua_createtable(L, rows, 0);
    for (int r = 0; r < rows; r++) {
        lua_createtable(L, cols, 0);
        for (int c = 0; c < cols; c++) {
            lua_pushnumber(L, v[(size_t)r * (size_t)cols + (size_t)c]);
            lua_rawseti(L, -2, c + 1);
        }
        lua_rawseti(L, -2, r + 1);
    }
}

static void push_floats(lua_State *L, const float *v, int n)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushnumber(L, v[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

/* ------------------------------------------------------------------------ */
/* Images: dalle.Image, float32 [batch][3][height][width]                   */
/* ------------------------------------------------------------------------ */

typedef struct limage {
    int batch, height, width;
    float px[]; /* batch * 3 * height * width */
} limage;

static size_t image_count(int b, int h, int w) { return (size_t)b * 3 * (size_t)h * (size_t)w; }

/* A new image userdata (pixels zero) pushed on the stack. */
static limage *new_image(lua_State *L, int b, int h, int w)
{
    size_t n = image_count(b, h, w);
    if (n > (SIZE_MAX - sizeof(limage)) / sizeof(float))
        luaL_error(L, "dalle: image of %d x 3 x %d x %d is too large", b, h, w);
    limage *im = lua_newuserdatauv(L, sizeof(limage) + n * sizeof(float), 0);
    im->batch = b;
    im->height = h;
    im->width = w;
    memset(im->px, 0, n * sizeof(float));
    luaL_setmetatable(L, IMAGE_MT);
    return im;
}

static limage *check_image(lua_State *L, int arg)
{
    return luaL_checkudata(L, arg, IMAGE_MT);
}

/* dalle.image(batch, height, width [, fill]): fill is a number (every
 * pixel) or a string of batch*3*height*width native float32 values (as
 * image:bytes() returns). */
static int l_image_new(lua_State *L)
{
    lua_settop(L, 4); /* missing arguments become nil */
    int b = (int)check_int_range(L, 1, 1, 4096);
    int h = (int)check_int_range(L, 2, 1, 16384);
    int w = (int)check_int_range(L, 3, 1, 16384);
    size_t n = image_count(b, h, w);
    int ft = lua_type(L, 4);
    if (ft == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, 4, &len);
        if (len != n * sizeof(float))
            luaL_argerror(L, 4, lua_pushfstring(L, "%d bytes of float32 expected, got %d",
                                                (int)(n * sizeof(float)), (int)len));
        limage *im = new_image(L, b, h, w);
        memcpy(im->px, s, len);
    } else {
        float fill = to_float(luaL_optnumber(L, 4, 0.0));
        limage *im = new_image(L, b, h, w);
        for (size_t i = 0; i < n; i++)
            im->px[i] = fill;
    }
    return 1;
}

/* image:size() -> batch, height, width */
static int l_image_size(lua_State *L)
{
    limage *im = check_image(L, 1);
    lua_pushinteger(L, im->batch);
    lua_pushinteger(L, im->height);
    lua_pushinteger(L, im->width);
    return 3;
}

static int l_image_len(lua_State *L)
{
    lua_pushinteger(L, check_image(L, 1)->batch);
    return 1;
}

/* The flat index of 1-based (b, c, y, x) at args 2..5. */
static size_t pixel_index(lua_State *L, const limage *im)
{
    lua_Integer b = check_int_range(L, 2, 1, im->batch);
    lua_Integer c = check_int_range(L, 3, 1, 3);
    lua_Integer y = check_int_range(L, 4, 1, im->height);
    lua_Integer x = check_int_range(L, 5, 1, im->width);
    return (((size_t)(b - 1) * 3 + (size_t)(c - 1)) * (size_t)im->height + (size_t)(y - 1)) *
               (size_t)im->width + (size_t)(x - 1);
}

/* image:pixel(b, c, y, x) -> value; 1-based, c = 1, 2, 3 for R, G, B. */
static int l_image_pixel(lua_State *L)
{
    limage *im = check_image(L, 1);
    lua_pushnumber(L, im->px[pixel_index(L, im)]);
    return 1;
}

/* image:set_pixel(b, c, y, x, value) */
static int l_image_set_pixel(lua_State *L)
{
    limage *im = check_image(L, 1);
    size_t i = pixel_index(L, im);
    im->px[i] = to_float(luaL_checknumber(L, 6));
    return 0;
}

/* image:get(b) -> a new one-image dalle.Image (a copy of image b). */
static int l_image_get(lua_State *L)
{
    limage *im = check_image(L, 1);
    int b = (int)check_int_range(L, 2, 1, im->batch);
    limage *out = new_image(L, 1, im->height, im->width);
    size_t n = image_count(1, im->height, im->width);
    memcpy(out->px, im->px + (size_t)(b - 1) * n, n * sizeof(float));
    return 1;
}

/* image:bytes() -> the pixels as a string of native float32. */
static int l_image_bytes(lua_State *L)
{
    limage *im = check_image(L, 1);
    lua_pushlstring(L, (const char *)im->px,
                    image_count(im->batch, im->height, im->width) * sizeof(float));
    return 1;
}

static int l_image_tostring(lua_State *L)
{
    limage *im = check_image(L, 1);
    lua_pushfstring(L, "dalle.Image(%d x 3 x %d x %d)", im->batch, im->height, im->width);
    return 1;
}

/* The images at args first..last as one image (pushed when more than one;
 * one image is returned as it is). All must share height and width. */
static limage *gather_images(lua_State *L, int first, int last)
{
    if (last < first)
        luaL_argerror(L, first, "dalle.Image expected, got no value");
    limage *im0 = check_image(L, first);
    if (last == first)
        return im0;
    int total = 0;
    for (int i = first; i <= last; i++) {
        limage *im = check_image(L, i);
        if (im->height != im0->height || im->width != im0->width)
            luaL_argerror(L, i, lua_pushfstring(L, "image of %dx%d, expected %dx%d like the first",
                                                im->height, im->width, im0->height,
                                                im0->width));
        if (im->batch > MAX_BATCH - total)
            luaL_argerror(L, i, "too many images");
        total += im->batch;
    }
    limage *out = new_image(L, total, im0->height, im0->width);
    size_t at = 0;
    for (int i = first; i <= last; i++) {
        limage *im = lua_touserdata(L, i);
        size_t n = image_count(im->batch, im->height, im->width);
        memcpy(out->px + at, im->px, n * sizeof(float));
        at += n;
    }
    return out;
}

/* dalle.concat(image, ...) -> one dalle.Image holding all their images. */
static int l_concat(lua_State *L)
{
    int top = lua_gettop(L);
    limage *im = gather_images(L, 1, top);
    if (lua_gettop(L) == top) { /* a single image: still a new one */
        limage *out = new_image(L, im->batch, im->height, im->width);
        memcpy(out->px, im->px, image_count(im->batch, im->height, im->width) * sizeof(float));
    }
    return 1;
}

/* dalle.save_png(path, image, ...): one PNG (a grid when several images). */
static int l_save_png(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    limage *im = gather_images(L, 2, lua_gettop(L));
    CHECK_STATUS(L, dalle_write_png(path, im->px, im->batch, im->height, im->width));
    return 0;
}

/* image:save_png(path) */
static int l_image_save_png(lua_State *L)
{
    limage *im = check_image(L, 1);
    const char *path = luaL_checkstring(L, 2);
    CHECK_STATUS(L, dalle_write_png(path, im->px, im->batch, im->height, im->width));
    return 0;
}

/* dalle.read_image(path, size) -> a one-image dalle.Image, size x size
 * (shorter side scaled to size, centre crop). */
static int l_read_image(lua_State *L)
{
    lua_settop(L, 2); /* missing arguments become nil */
    const char *path = luaL_checkstring(L, 1);
    int size = (int)check_int_range(L, 2, 1, 16384);
    limage *im = new_image(L, 1, size, size);
    CHECK_STATUS(L, dalle_read_image(path, size, im->px));
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Bundles: dalle.bundle(path) -> a plain table                             */
/* ------------------------------------------------------------------------ */

static const char *dtype_name(dalle_dtype t)
{
    static const char *const names[] = {"f32", "f16", "bf16", "i8", "u8", "i32", "i64"};
    return ((unsigned)t < sizeof names / sizeof names[0]) ? names[t] : "unknown";
}

static const char *codec_name(dalle_codec c)
{
    static const char *const names[] = {"raw", "zstd", "alias"};
    return ((unsigned)c < sizeof names / sizeof names[0]) ? names[c] : "unknown";
}

/* Push the value of metadata `key` (entry of `type`, `count` elements). */
static void push_meta_value(lua_State *L, const dalle_bundle *b, const char *key,
                            dalle_meta_type type, int64_t count)
{
    int64_t n = count;
    switch (type) {
    case DALLE_META_I64: {
        int64_t v = 0;
        CHECK_STATUS(L, dalle_bundle_meta_i64(b, key, &v));
        lua_pushinteger(L, (lua_Integer)v);
        return;
    }
    case DALLE_META_BOOL: {
        int64_t v = 0;
        CHECK_STATUS(L, dalle_bundle_meta_i64(b, key, &v));
        lua_pushboolean(L, v != 0);
        return;
    }
    case DALLE_META_F64: {
        double v = 0;
        CHECK_STATUS(L, dalle_bundle_meta_f64(b, key, &v));
        lua_pushnumber(L, v);
        return;
    }
    case DALLE_META_STRING: {
        const char *v = NULL;
        CHECK_STATUS(L, dalle_bundle_meta_str(b, key, &v));
        lua_pushstring(L, v);
        return;
    }
    case DALLE_META_I64_ARRAY: {
        int64_t *v = scratch(L, (size_t)n, sizeof *v);
        CHECK_STATUS(L, dalle_bundle_meta_i64_array(b, key, v, n, &n));
        lua_createtable(L, (int)n, 0);
        for (int64_t i = 0; i < n; i++) {
            lua_pushinteger(L, (lua_Integer)v[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
    case DALLE_META_F64_ARRAY: {
        double *v = scratch(L, (size_t)n, sizeof *v);
        CHECK_STATUS(L, dalle_bundle_meta_f64_array(b, key, v, n, &n));
        lua_createtable(L, (int)n, 0);
        for (int64_t i = 0; i < n; i++) {
            lua_pushnumber(L, v[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
    case DALLE_META_STRING_ARRAY: {
        const char **v = scratch(L, (size_t)n, sizeof *v);
        CHECK_STATUS(L, dalle_bundle_meta_str_array(b, key, v, n, &n));
        lua_createtable(L, (int)n, 0);
        for (int64_t i = 0; i < n; i++) {
            lua_pushstring(L, v[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
    default:
        lua_pushnil(L);
        return;
    }
    lua_remove(L, -2); /* the scratch buffer */
}

/* Push {kind=, version_minor=, meta={...}, tensors={{name=, dtype=, shape=,
 * numel=, nbytes=, stored_bytes=, codec=, alias_of=, alias_offset=}, ...}}. */
static void push_bundle_info(lua_State *L, const dalle_bundle *b)
{
    lua_createtable(L, 0, 4);
    lua_pushstring(L, dalle_bundle_kind(b));
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, dalle_bundle_version_minor(b));
    lua_setfield(L, -2, "version_minor");

    int nm = dalle_bundle_n_meta(b);
    lua_createtable(L, 0, nm > 0 ? nm : 0);
    for (int i = 0; i < nm; i++) {
        const char *key;
        dalle_meta_type type;
        int64_t count;
        CHECK_STATUS(L, dalle_bundle_meta_info(b, i, &key, &type, &count));
        push_meta_value(L, b, key, type, count);
        lua_setfield(L, -2, key);
    }
    lua_setfield(L, -2, "meta");

    int nt = dalle_bundle_n_tensors(b);
    lua_createtable(L, nt > 0 ? nt : 0, 0);
    for (int i = 0; i < nt; i++) {
        dalle_tensor_info ti;
        CHECK_STATUS(L, dalle_bundle_tensor_info(b, i, &ti));
        lua_createtable(L, 0, 9);
        lua_pushstring(L, ti.name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, dtype_name(ti.dtype));
        lua_setfield(L, -2, "dtype");
        lua_createtable(L, ti.ndim, 0);
        for (int d = 0; d < ti.ndim && d < DALLE_MAX_DIMS; d++) {
            lua_pushinteger(L, (lua_Integer)ti.dims[d]);
            lua_rawseti(L, -2, d + 1);
        }
        lua_setfield(L, -2, "shape");
        lua_pushinteger(L, (lua_Integer)ti.numel);
        lua_setfield(L, -2, "numel");
        lua_pushinteger(L, (lua_Integer)ti.nbytes);
        lua_setfield(L, -2, "nbytes");
        lua_pushinteger(L, (lua_Integer)ti.stored_bytes);
        lua_setfield(L, -2, "stored_bytes");
        lua_pushstring(L, codec_name(ti.codec));
        lua_setfield(L, -2, "codec");
        if (ti.alias_of >= 0) {
            dalle_tensor_info target;
            CHECK_STATUS(L, dalle_bundle_tensor_info(b, ti.alias_of, &target));
            lua_pushstring(L, target.name);
            lua_setfield(L, -2, "alias_of");
            lua_pushinteger(L, (lua_Integer)ti.alias_offset);
            lua_setfield(L, -2, "alias_offset");
        }
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "tensors");
}

typedef struct lbundle {
    dalle_bundle *b;
} lbundle;

static int l_bundle_handle_gc(lua_State *L)
{
    lbundle *h = luaL_checkudata(L, 1, BUNDLE_MT);
    dalle_bundle_close(h->b);
    h->b = NULL;
    return 0;
}

/* dalle.bundle(path [, {verify = true}]) -> info table (see
 * push_bundle_info); verify decodes every tensor and checks its checksums. */
static int l_bundle(lua_State *L)
{
    static const char *const keys[] = {"verify", NULL};
    lua_settop(L, 2); /* missing arguments become nil */
    const char *path = luaL_checkstring(L, 1);
    int has = opt_table(L, 2, keys);
    int verify = 0;
    if (has) {
        lua_getfield(L, 2, "verify");
        verify = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    /* the handle lives in a userdata, so a memory error below cannot leak it */
    lbundle *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->b = NULL;
    luaL_setmetatable(L, BUNDLE_MT);
    CHECK_STATUS(L, dalle_bundle_open(path, &h->b));
    if (verify)
        CHECK_STATUS(L, dalle_bundle_verify(h->b));
    push_bundle_info(L, h->b);
    dalle_bundle_close(h->b);
    h->b = NULL;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Contexts: options shared by dalle.open and dalle.clip                    */
/* ------------------------------------------------------------------------ */

static dalle_ctx_params ctx_params_from(lua_State *L, int arg)
{
    static const char *const keys[] = {"threads", "backend", "device", "max_batch", NULL};
    static const char *const backends[] = {"cpu", "cuda", "auto"};
    dalle_ctx_params p = dalle_ctx_default_params();
    int has = opt_table(L, arg, keys);
    p.n_threads = (int)opt_integer(L, arg, has, "threads", p.n_threads, 0, INT_MAX);
    p.device = (int)opt_integer(L, arg, has, "device", p.device, 0, INT_MAX);
    p.max_batch = (int)opt_integer(L, arg, has, "max_batch", p.max_batch, 1, INT_MAX);
    if (has && lua_getfield(L, arg, "backend") != LUA_TNIL) {
        const char *s = lua_tostring(L, -1);
        int found = -1;
        for (int i = 0; s && lua_type(L, -1) == LUA_TSTRING && i < 3; i++)
            if (!strcmp(s, backends[i]))
                found = i;
        if (found < 0)
            option_error(L, arg, "backend", -1, "'cpu', 'cuda' or 'auto'");
        p.backend = found == 0 ? DALLE_BACKEND_CPU
                    : found == 1 ? DALLE_BACKEND_CUDA
                                 : DALLE_BACKEND_AUTO;
    }
    if (has)
        lua_pop(L, 1);
    return p;
}

/* ------------------------------------------------------------------------ */
/* dalle.Model                                                              */
/* ------------------------------------------------------------------------ */

typedef struct lmodel {
    dalle_ctx *ctx;
    int busy; /* inside sample/generate_text: the progress callback may not
                 use or close this model */
} lmodel;

static lmodel *check_model_ud(lua_State *L, int arg)
{
    lmodel *m = luaL_checkudata(L, arg, MODEL_MT);
    if (m->busy)
        luaL_error(L, "dalle model is busy (used from its own progress callback)");
    return m;
}

static dalle_ctx *check_model(lua_State *L, int arg)
{
    lmodel *m = check_model_ud(L, arg);
    if (!m->ctx)
        luaL_error(L, "attempt to use a closed dalle model");
    return m->ctx;
}

/* dalle.open(path [, {threads=, backend=, device=, max_batch=}]) */
static int l_open(lua_State *L)
{
    lua_settop(L, 2); /* missing arguments become nil */
    const char *path = luaL_checkstring(L, 1);
    dalle_ctx_params p = ctx_params_from(L, 2);
    lmodel *m = lua_newuserdatauv(L, sizeof *m, 0);
    m->ctx = NULL;
    m->busy = 0;
    luaL_setmetatable(L, MODEL_MT);
    CHECK_STATUS(L, dalle_ctx_create(path, &p, &m->ctx));
    return 1;
}

/* model:close(), __close and __gc: free the context (again: nothing). */
static int l_model_close(lua_State *L)
{
    lmodel *m = check_model_ud(L, 1);
    dalle_ctx_free(m->ctx);
    m->ctx = NULL;
    return 0;
}

static int l_model_tostring(lua_State *L)
{
    lmodel *m = luaL_checkudata(L, 1, MODEL_MT);
    if (m->ctx)
        lua_pushfstring(L, "dalle.Model(%s, %p)", dalle_bundle_kind(dalle_ctx_bundle(m->ctx)),
                        (void *)m->ctx);
    else
        lua_pushliteral(L, "dalle.Model(closed)");
    return 1;
}

/* model:shapes() -> {kind=, text_seq_len=, num_text_tokens=, image_seq_len=,
 * num_image_tokens=, image_size=, total_tokens=} */
static int l_model_shapes(lua_State *L)
{
    dalle_ctx *ctx = check_model(L, 1);
    lua_createtable(L, 0, 7);
    lua_pushstring(L, dalle_bundle_kind(dalle_ctx_bundle(ctx)));
    lua_setfield(L, -2, "kind");
    struct {
        const char *name;
        int (*fn)(const dalle_ctx *);
    } f[] = {{"text_seq_len", dalle_text_seq_len},   {"num_text_tokens", dalle_num_text_tokens},
             {"image_seq_len", dalle_image_seq_len}, {"num_image_tokens", dalle_num_image_tokens},
             {"image_size", dalle_image_size},       {"total_tokens", dalle_total_tokens}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        lua_pushinteger(L, f[i].fn(ctx));
        lua_setfield(L, -2, f[i].name);
    }
    return 1;
}

/* model:bundle() -> the info table of the model's bundle (as dalle.bundle). */
static int l_model_bundle(lua_State *L)
{
    dalle_ctx *ctx = check_model(L, 1);
    push_bundle_info(L, dalle_ctx_bundle(ctx));
    return 1;
}

/* Tokenize `text` into a new scratch buffer of context_length ids (pushed). */
static int32_t *tokenize_to(lua_State *L, dalle_ctx *ctx, const char *text, int context_length,
                            int truncate)
{
    int32_t *ids = scratch(L, (size_t)context_length, sizeof *ids);
    CHECK_STATUS(L, dalle_tokenize(ctx, text, ids, context_length, truncate));
    return ids;
}

/* model:tokenize(text [, context_length [, truncate]]) -> table of
 * context_length ids (default text_seq_len), padded with 0. */
static int l_model_tokenize(lua_State *L)
{
    lua_settop(L, 4); /* missing arguments become nil */
    dalle_ctx *ctx = check_model(L, 1);
    const char *text = luaL_checkstring(L, 2);
    int def = dalle_text_seq_len(ctx);
    int len;
    if (lua_isnoneornil(L, 3)) {
        if (def < 1)
            luaL_argerror(L, 3, "context_length expected (this model has no text input)");
        len = def;
    } else {
        len = (int)check_int_range(L, 3, 1, 1 << 16);
    }
    int truncate = lua_toboolean(L, 4);
    int32_t *ids = tokenize_to(L, ctx, text, len, truncate);
    push_ids(L, ids, len);
    return 1;
}

/* Captions of T ids at `arg`: a table of ids (one caption) or a table of
 * such tables, each padded with 0. Pushes a scratch buffer [n][T]; returns
 * it, n in *n. */
static int32_t *read_text_rows(lua_State *L, int arg, int T, int *n)
{
    luaL_argexpected(L, lua_type(L, arg) == LUA_TTABLE, arg, "table of ids");
    lua_Integer rows = is_table_of_tables(L, arg) ? luaL_len(L, arg) : 1;
    if (rows > MAX_BATCH)
        luaL_argerror(L, arg, "too many captions");
    int32_t *ids = scratch(L, (size_t)rows * (size_t)T, sizeof *ids);
    memset(ids, 0, (size_t)rows * (size_t)T * sizeof *ids);
    if (!is_table_of_tables(L, arg)) {
        read_ids(L, arg, arg, "text", ids, T);
    } else {
        for (lua_Integer r = 0; r < rows; r++) {
            lua_geti(L, arg, r + 1);
            read_ids(L, -1, arg, "text", ids + (size_t)r * T, T);
            lua_pop(L, 1);
        }
    }
    *n = (int)rows;
    return ids;
}

/* Captions at `arg`: a string (tokenized, `truncate` as given), a table of
 * ids (one caption, padded with 0) or a table of such tables. Pushes a
 * scratch buffer [n][text_seq_len]; returns it, n in *n. */
static int32_t *read_captions(lua_State *L, dalle_ctx *ctx, int arg, int truncate, int *n)
{
    const int T = dalle_text_seq_len(ctx);
    if (T < 1)
        luaL_argerror(L, arg, "this model has no transformer (a VAE bundle)");
    if (lua_type(L, arg) == LUA_TSTRING) {
        *n = 1;
        return tokenize_to(L, ctx, lua_tostring(L, arg), T, truncate);
    }
    luaL_argexpected(L, lua_type(L, arg) == LUA_TTABLE, arg, "string or table of ids");
    return read_text_rows(L, arg, T, n);
}

/* The Lua progress callback: called under lua_pcall so that a Lua error
 * never unwinds through the library. It returns false to stop the call;
 * an error stops it too and is raised again once the library returns. */
typedef struct lprogress {
    lua_State *L;
    int fn;      /* stack index of the function, 0 if none */
    int err;     /* stack index of a slot for the error value */
    int failed;  /* the callback raised */
    int stop;    /* the callback returned false */
} lprogress;

static void progress_cb(int64_t done, int64_t total, void *user)
{
    lprogress *p = user;
    if (!p->fn || p->failed || p->stop)
        return;
    lua_State *L = p->L;
    lua_pushvalue(L, p->fn);
    lua_pushinteger(L, (lua_Integer)done);
    lua_pushinteger(L, (lua_Integer)total);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        p->failed = 1;
        lua_replace(L, p->err);
        return;
    }
    if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))
        p->stop = 1;
    lua_pop(L, 1);
}

static int abort_cb(void *user)
{
    lprogress *p = user;
    return p->failed || p->stop;
}

/* Set up p for the `progress` option of the table at arg (has: it exists). */
static void progress_setup(lua_State *L, int arg, int has, lprogress *p)
{
    memset(p, 0, sizeof *p);
    p->L = L;
    lua_pushnil(L); /* the error slot */
    p->err = lua_gettop(L);
    if (has && lua_getfield(L, arg, "progress") != LUA_TNIL) {
        if (!lua_isfunction(L, -1))
            option_error(L, arg, "progress", -1, "a function");
        p->fn = lua_gettop(L);
    } else if (has) {
        lua_pop(L, 1);
    }
    luaL_checkstack(L, 8, "dalle: progress callback");
}

/* After the library returned `s`: re-raise a callback's error, or s. */
static void progress_finish(lua_State *L, lprogress *p, dalle_status s)
{
    if (p->failed) {
        lua_pushvalue(L, p->err);
        lua_error(L);
    }
    if (s != DALLE_OK)
        raise_status(L, s);
}

static const char *const sample_keys[] = {"seed", "filter_thres", "temperature", "cond_scale",
                                          "n",    "prime",        "truncate",    "progress",
                                          NULL};

static dalle_sample_params sample_params_from(lua_State *L, int arg, int has)
{
    dalle_sample_params sp = dalle_sample_default_params();
    sp.seed = (uint64_t)opt_integer(L, arg, has, "seed", 0, 0, LUA_MAXINTEGER);
    sp.filter_thres = to_float(opt_number(L, arg, has, "filter_thres", sp.filter_thres));
    sp.temperature = to_float(opt_number(L, arg, has, "temperature", sp.temperature));
    sp.cond_scale = to_float(opt_number(L, arg, has, "cond_scale", sp.cond_scale));
    return sp;
}

static int opt_truncate(lua_State *L, int arg, int has)
{
    if (!has)
        return 0;
    lua_getfield(L, arg, "truncate");
    int t = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return t;
}

/* model:sample(text, {seed=, filter_thres=, temperature=, cond_scale=, n=,
 * prime=, truncate=, progress=}) -> {{ids of image 1}, {ids of image 2}, ...}
 * text: a string, a table of ids or a table of captions; n images per
 * caption (default 1), caption by caption. prime: image ids to start every
 * image from (a table of 0 .. image_seq_len ids), or one such table per
 * output image. progress(done, total): called after each image token;
 * return false to stop (a DALLE_ERR_ABORTED error). */
static int l_model_sample(lua_State *L)
{
    lua_settop(L, 3); /* missing arguments become nil */
    dalle_ctx *ctx = check_model(L, 1);
    int has = opt_table(L, 3, sample_keys);
    dalle_sample_params sp = sample_params_from(L, 3, has);
    int per = (int)opt_integer(L, 3, has, "n", 1, 1, MAX_BATCH);
    int n_captions;
    int32_t *captions = read_captions(L, ctx, 2, opt_truncate(L, 3, has), &n_captions);
    if ((int64_t)n_captions * per > MAX_BATCH)
        luaL_argerror(L, 3, "too many images (captions x n)");
    const int batch = n_captions * per;
    const int T = dalle_text_seq_len(ctx), S = dalle_image_seq_len(ctx);

    /* every caption repeated n times, in order */
    const int32_t *text = captions;
    if (per > 1) {
        int32_t *rep = scratch(L, (size_t)batch * T, sizeof *rep);
        for (int i = 0; i < batch; i++)
            memcpy(rep + (size_t)i * T, captions + (size_t)(i / per) * T, (size_t)T * sizeof *rep);
        text = rep;
    }

    if (has && lua_getfield(L, 3, "prime") != LUA_TNIL) {
        int prime_idx = lua_gettop(L);
        int32_t *prime = scratch(L, (size_t)batch * S, sizeof *prime);
        if (!is_table_of_tables(L, prime_idx)) {
            sp.n_prime = read_ids(L, prime_idx, 3, "prime", prime, S);
            for (int i = 1; i < batch; i++)
                memcpy(prime + (size_t)i * sp.n_prime, prime, (size_t)sp.n_prime * sizeof *prime);
        } else {
            if (luaL_len(L, prime_idx) != batch)
                luaL_argerror(L, 3, lua_pushfstring(L, "prime: %d tables of ids expected (one per "
                                                       "image), got %I", batch,
                                                    luaL_len(L, prime_idx)));
            int32_t *row = scratch(L, (size_t)S, sizeof *row);
            for (int i = 0; i < batch; i++) {
                lua_geti(L, prime_idx, i + 1);
                int k = read_ids(L, -1, 3, "prime", row, S);
                lua_pop(L, 1);
                if (i == 0)
                    sp.n_prime = k;
                else if (k != sp.n_prime)
                    luaL_argerror(L, 3, "prime: every image needs the same number of ids");
                memcpy(prime + (size_t)i * k, row, (size_t)k * sizeof *row);
            }
        }
        sp.prime = prime;
    } else if (has) {
        lua_pop(L, 1);
    }

    int32_t *out = scratch(L, (size_t)batch * S, sizeof *out);
    lprogress pr;
    progress_setup(L, 3, has, &pr);
    sp.progress = progress_cb;
    sp.abort = abort_cb;
    sp.user = &pr;
    lmodel *m = lua_touserdata(L, 1);
    m->busy = 1;
    dalle_status s = dalle_sample(ctx, text, batch, &sp, out);
    m->busy = 0;
    progress_finish(L, &pr, s);
    push_id_rows(L, out, batch, S);
    return 1;
}

/* model:generate_text(prefix_ids, {seed=, filter_thres=, temperature=,
 * progress=}) -> text_seq_len ids: the prefix and the sampled continuation
 * (may hold padding ids num_text_tokens + i). */
static int l_model_generate_text(lua_State *L)
{
    static const char *const keys[] = {"seed", "filter_thres", "temperature", "progress", NULL};
    lua_settop(L, 3); /* missing arguments become nil */
    dalle_ctx *ctx = check_model(L, 1);
    int has = opt_table(L, 3, keys);
    dalle_sample_params sp = sample_params_from(L, 3, has);
    const int T = dalle_text_seq_len(ctx);
    if (T < 1)
        luaL_argerror(L, 1, "this model has no transformer (a VAE bundle)");
    int32_t *prefix = scratch(L, (size_t)T, sizeof *prefix);
    int n_prefix = lua_isnoneornil(L, 2) ? 0 : read_ids(L, 2, 2, "prefix", prefix, T);
    int32_t *out = scratch(L, (size_t)T, sizeof *out);
    lprogress pr;
    progress_setup(L, 3, has, &pr);
    sp.progress = progress_cb;
    sp.abort = abort_cb;
    sp.user = &pr;
    lmodel *m = lua_touserdata(L, 1);
    m->busy = 1;
    dalle_status s = dalle_generate_text(ctx, n_prefix ? prefix : NULL, n_prefix, &sp, out);
    m->busy = 0;
    progress_finish(L, &pr, s);
    push_ids(L, out, T);
    return 1;
}

/* model:logits(text, image_ids [, {cond_scale=, incremental=, truncate=}])
 * -> rows x total_tokens numbers ({{...}, ...}) for one sequence: text a
 * string or a table of ids, image_ids a table of 0 .. image_seq_len ids (or
 * nil). Masked entries are -FLT_MAX. */
static int l_model_logits(lua_State *L)
{
    static const char *const keys[] = {"cond_scale", "incremental", "truncate", NULL};
    lua_settop(L, 4); /* missing arguments become nil */
    dalle_ctx *ctx = check_model(L, 1);
    int has = opt_table(L, 4, keys);
    double cond_scale = opt_number(L, 4, has, "cond_scale", 1.0);
    int incremental = 0;
    if (has) {
        lua_getfield(L, 4, "incremental");
        incremental = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    if (is_table_of_tables(L, 2))
        luaL_argerror(L, 2, "one caption expected (logits takes one sequence)");
    int n;
    int32_t *text = read_captions(L, ctx, 2, opt_truncate(L, 4, has), &n);
    const int S = dalle_image_seq_len(ctx), V = dalle_total_tokens(ctx);
    int32_t *image = scratch(L, (size_t)S, sizeof *image);
    int n_image = lua_isnoneornil(L, 3) ? 0 : read_ids(L, 3, 3, "image", image, S);
    int rows = dalle_logits_rows(ctx, n_image);
    float *out = scratch(L, (size_t)(rows > 0 ? rows : 1) * (size_t)V, sizeof *out);
    CHECK_STATUS(L, (incremental ? dalle_logits_incremental : dalle_logits)(
                        ctx, text, n_image ? image : NULL, 1, n_image, to_float(cond_scale), out));
    push_float_rows(L, out, rows, V);
    return 1;
}

/* model:decode(ids) -> dalle.Image: ids is one image's table of
 * image_seq_len ids or a table of them (a batch). */
static int l_model_decode(lua_State *L)
{
    lua_settop(L, 2); /* missing arguments become nil */
    dalle_ctx *ctx = check_model(L, 1);
    const int S = dalle_image_seq_len(ctx), size = dalle_image_size(ctx);
    luaL_checktype(L, 2, LUA_TTABLE);
    int batch = 1;
    int32_t *ids;
    if (is_table_of_tables(L, 2)) {
        lua_Integer rows = luaL_len(L, 2);
        if (rows > MAX_BATCH)
            luaL_argerror(L, 2, "too many images");
        batch = (int)rows;
        ids = scratch(L, (size_t)batch * S, sizeof *ids);
        for (int r = 0; r < batch; r++) {
            lua_geti(L, 2, r + 1);
            if (read_ids(L, -1, 2, "ids", ids + (size_t)r * S, S) != S)
                luaL_argerror(L, 2, lua_pushfstring(L, "ids[%d]: %d ids expected", r + 1, S));
            lua_pop(L, 1);
        }
    } else {
        ids = scratch(L, (size_t)S, sizeof *ids);
        if (read_ids(L, 2, 2, "ids", ids, S) != S)
            luaL_argerror(L, 2, lua_pushfstring(L, "%d ids expected", S));
    }
    limage *im = new_image(L, batch, size, size);
    CHECK_STATUS(L, dalle_decode(ctx, ids, batch, im->px));
    return 1;
}

/* model:encode(image) -> {{ids of image 1}, ...}; the image must be
 * image_size x image_size, pixels in [0, 1]. */
static int l_model_encode(lua_State *L)
{
    lua_settop(L, 2); /* missing arguments become nil */
    dalle_ctx *ctx = check_model(L, 1);
    limage *im = check_image(L, 2);
    const int S = dalle_image_seq_len(ctx), size = dalle_image_size(ctx);
    if (im->height != size || im->width != size)
        luaL_argerror(L, 2, lua_pushfstring(L, "image of %dx%d, the model takes %dx%d",
                                            im->height, im->width, size, size));
    int32_t *ids = scratch(L, (size_t)im->batch * S, sizeof *ids);
    CHECK_STATUS(L, dalle_encode(ctx, im->px, im->batch, ids));
    push_id_rows(L, ids, im->batch, S);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* dalle.Clip                                                               */
/* ------------------------------------------------------------------------ */

typedef struct lclip {
    clip_ctx *ctx;
} lclip;

static clip_ctx *check_clip(lua_State *L, int arg)
{
    lclip *c = luaL_checkudata(L, arg, CLIP_MT);
    if (!c->ctx)
        luaL_error(L, "attempt to use a closed dalle clip model");
    return c->ctx;
}

/* dalle.clip(path [, {threads=, backend=, device=, max_batch=}]) */
static int l_clip_open(lua_State *L)
{
    lua_settop(L, 2); /* missing arguments become nil */
    const char *path = luaL_checkstring(L, 1);
    dalle_ctx_params p = ctx_params_from(L, 2);
    lclip *c = lua_newuserdatauv(L, sizeof *c, 0);
    c->ctx = NULL;
    luaL_setmetatable(L, CLIP_MT);
    CHECK_STATUS(L, clip_ctx_create(path, &p, &c->ctx));
    return 1;
}

static int l_clip_close(lua_State *L)
{
    lclip *c = luaL_checkudata(L, 1, CLIP_MT);
    clip_ctx_free(c->ctx);
    c->ctx = NULL;
    return 0;
}

static int l_clip_tostring(lua_State *L)
{
    lclip *c = luaL_checkudata(L, 1, CLIP_MT);
    if (c->ctx)
        lua_pushfstring(L, "dalle.Clip(%p)", (void *)c->ctx);
    else
        lua_pushliteral(L, "dalle.Clip(closed)");
    return 1;
}

/* clip:shapes() -> {kind=, text_seq_len=, num_text_tokens=, image_size=,
 * embed_dim=} */
static int l_clip_shapes(lua_State *L)
{
    clip_ctx *ctx = check_clip(L, 1);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, dalle_bundle_kind(clip_ctx_bundle(ctx)));
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, clip_text_seq_len(ctx));
    lua_setfield(L, -2, "text_seq_len");
    lua_pushinteger(L, clip_num_text_tokens(ctx));
    lua_setfield(L, -2, "num_text_tokens");
    lua_pushinteger(L, clip_image_size(ctx));
    lua_setfield(L, -2, "image_size");
    lua_pushinteger(L, clip_embed_dim(ctx));
    lua_setfield(L, -2, "embed_dim");
    return 1;
}

/* The images at args first..last (see gather_images), checked to be
 * image_size x image_size for this CLIP. */
static limage *clip_images(lua_State *L, clip_ctx *ctx, int first, int last)
{
    const int size = clip_image_size(ctx);
    limage *im = gather_images(L, first, last);
    if (im->height != size || im->width != size)
        luaL_argerror(L, first, lua_pushfstring(L, "image of %dx%d, the model takes %dx%d",
                                                im->height, im->width, size, size));
    return im;
}

/* One caption of at most text_seq_len ids at `arg` (padded with 0), pushed. */
static int32_t *clip_caption(lua_State *L, clip_ctx *ctx, int arg)
{
    const int T = clip_text_seq_len(ctx);
    int32_t *text = scratch(L, (size_t)T, sizeof *text);
    memset(text, 0, (size_t)T * sizeof *text);
    read_ids(L, arg, arg, "text", text, T);
    return text;
}

/* clip:score(text_ids, image, ...) -> {score of image 1, ...}: text_ids at
 * most text_seq_len ids (padded with 0); images image_size x image_size in
 * the model's own input range. No text mask (as clip_score). */
static int l_clip_score(lua_State *L)
{
    clip_ctx *ctx = check_clip(L, 1);
    const int last = lua_gettop(L); /* the last image argument */
    int32_t *text = clip_caption(L, ctx, 2);
    limage *im = clip_images(L, ctx, 3, last);
    float *out = scratch(L, (size_t)im->batch, sizeof *out);
    CHECK_STATUS(L, clip_score(ctx, text, im->px, im->batch, out));
    push_floats(L, out, im->batch);
    return 1;
}

/* clip:score_masked(text_ids, mask, image, ...): as score with
 * DALLE-pytorch's text mask: a table of booleans (or 0/1) per text
 * position, missing entries false; or `true` for upstream's text ~= 0. */
static int l_clip_score_masked(lua_State *L)
{
    clip_ctx *ctx = check_clip(L, 1);
    const int last = lua_gettop(L);
    const int T = clip_text_seq_len(ctx);
    int32_t *text = clip_caption(L, ctx, 2);
    uint8_t *mask = scratch(L, (size_t)T, 1);
    memset(mask, 0, (size_t)T);
    if (lua_type(L, 3) == LUA_TBOOLEAN && lua_toboolean(L, 3)) {
        for (int i = 0; i < T; i++)
            mask[i] = text[i] != 0;
    } else {
        luaL_argexpected(L, lua_type(L, 3) == LUA_TTABLE, 3, "table of booleans or true");
        lua_Integer n = luaL_len(L, 3);
        if (n > T)
            luaL_argerror(L, 3, lua_pushfstring(L, "mask: %I entries, at most %d expected", n, T));
        for (lua_Integer i = 1; i <= n; i++) {
            lua_geti(L, 3, i);
            mask[i - 1] = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) != 0
                                                           : lua_toboolean(L, -1);
            lua_pop(L, 1);
        }
    }
    limage *im = clip_images(L, ctx, 4, last);
    float *out = scratch(L, (size_t)im->batch, sizeof *out);
    CHECK_STATUS(L, clip_score_masked(ctx, text, mask, im->px, im->batch, out));
    push_floats(L, out, im->batch);
    return 1;
}

/* clip:rank(text_ids, image, ...) -> scores, order: order lists the image
 * numbers (1-based) best first. */
static int l_clip_rank(lua_State *L)
{
    clip_ctx *ctx = check_clip(L, 1);
    const int last = lua_gettop(L);
    int32_t *text = clip_caption(L, ctx, 2);
    limage *im = clip_images(L, ctx, 3, last);
    float *scores = scratch(L, (size_t)im->batch, sizeof *scores);
    int *order = scratch(L, (size_t)im->batch, sizeof *order);
    CHECK_STATUS(L, clip_rank(ctx, text, im->px, im->batch, scores, order));
    push_floats(L, scores, im->batch);
    lua_createtable(L, im->batch, 0);
    for (int i = 0; i < im->batch; i++) {
        lua_pushinteger(L, (lua_Integer)order[i] + 1);
        lua_rawseti(L, -2, i + 1);
    }
    return 2;
}

/* clip:encode_image(image, ...) -> {{embed_dim numbers}, ...} (unnormalised) */
static int l_clip_encode_image(lua_State *L)
{
    clip_ctx *ctx = check_clip(L, 1);
    limage *im = clip_images(L, ctx, 2, lua_gettop(L));
    const int E = clip_embed_dim(ctx);
    float *f = scratch(L, (size_t)im->batch * (size_t)E, sizeof *f);
    CHECK_STATUS(L, clip_encode_image(ctx, im->px, im->batch, f));
    push_float_rows(L, f, im->batch, E);
    return 1;
}

/* clip:encode_text(text_ids or {text_ids, ...}) -> {{embed_dim numbers}, ...} */
static int l_clip_encode_text(lua_State *L)
{
    lua_settop(L, 2);
    clip_ctx *ctx = check_clip(L, 1);
    const int E = clip_embed_dim(ctx);
    int n;
    int32_t *text = read_text_rows(L, 2, clip_text_seq_len(ctx), &n);
    float *f = scratch(L, (size_t)n * (size_t)E, sizeof *f);
    CHECK_STATUS(L, clip_encode_text(ctx, text, n, f));
    push_float_rows(L, f, n, E);
    return 1;
}

/* clip:logits_per_image(image, texts) -> n_images x n_texts scores;
 * texts: text_ids or {text_ids, ...}. */
static int l_clip_logits_per_image(lua_State *L)
{
    lua_settop(L, 3);
    clip_ctx *ctx = check_clip(L, 1);
    limage *im = clip_images(L, ctx, 2, 2);
    int n;
    int32_t *text = read_text_rows(L, 3, clip_text_seq_len(ctx), &n);
    float *out = scratch(L, (size_t)im->batch * (size_t)n, sizeof *out);
    CHECK_STATUS(L, clip_logits_per_image(ctx, im->px, im->batch, text, n, out));
    push_float_rows(L, out, im->batch, n);
    return 1;
}

/* clip:preprocess(rgb, height, width) -> a one-image dalle.Image in the
 * model's input range; rgb: a string of height*width*3 bytes (8-bit RGB,
 * row by row). */
static int l_clip_preprocess(lua_State *L)
{
    lua_settop(L, 4);
    clip_ctx *ctx = check_clip(L, 1);
    size_t len;
    const char *rgb = luaL_checklstring(L, 2, &len);
    int h = (int)check_int_range(L, 3, 1, 65536);
    int w = (int)check_int_range(L, 4, 1, 65536);
    if (len != (size_t)h * (size_t)w * 3)
        luaL_argerror(L, 2, lua_pushfstring(L, "%d x %d x 3 bytes expected, got %I", h, w,
                                            (lua_Integer)len));
    const int size = clip_image_size(ctx);
    limage *im = new_image(L, 1, size, size);
    CHECK_STATUS(L, clip_preprocess(ctx, (const uint8_t *)rgb, h, w, im->px));
    return 1;
}

/* ------------------------------------------------------------------------ */
/* dalle.Tokenizer                                                          */
/* ------------------------------------------------------------------------ */

typedef struct ltok {
    dalle_tokenizer *tok;
} ltok;

static dalle_tokenizer *check_tok(lua_State *L, int arg)
{
    ltok *t = luaL_checkudata(L, arg, TOKENIZER_MT);
    if (!t->tok)
        luaL_error(L, "attempt to use a closed dalle tokenizer");
    return t->tok;
}

/* dalle.tokenizer(path): a bundle converted with --bpe, or a merges file. */
static int l_tok_open(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    ltok *t = lua_newuserdatauv(L, sizeof *t, 0);
    t->tok = NULL;
    luaL_setmetatable(L, TOKENIZER_MT);
    CHECK_STATUS(L, dalle_tokenizer_create(path, &t->tok));
    return 1;
}

static int l_tok_close(lua_State *L)
{
    ltok *t = luaL_checkudata(L, 1, TOKENIZER_MT);
    dalle_tokenizer_free(t->tok);
    t->tok = NULL;
    return 0;
}

static int l_tok_tostring(lua_State *L)
{
    ltok *t = luaL_checkudata(L, 1, TOKENIZER_MT);
    if (t->tok)
        lua_pushfstring(L, "dalle.Tokenizer(%d ids)", dalle_tokenizer_vocab_size(t->tok));
    else
        lua_pushliteral(L, "dalle.Tokenizer(closed)");
    return 1;
}

static int l_tok_vocab_size(lua_State *L)
{
    lua_pushinteger(L, dalle_tokenizer_vocab_size(check_tok(L, 1)));
    return 1;
}

/* tok:encode(text) -> ids (no start/end tokens, no padding) */
static int l_tok_encode(lua_State *L)
{
    dalle_tokenizer *tok = check_tok(L, 1);
    const char *text = luaL_checkstring(L, 2);
    int n = 0;
    CHECK_STATUS(L, dalle_tokenizer_encode(tok, text, NULL, 0, &n));
    int32_t *ids = scratch(L, (size_t)(n > 0 ? n : 1), sizeof *ids);
    if (n > 0)
        CHECK_STATUS(L, dalle_tokenizer_encode(tok, text, ids, n, &n));
    push_ids(L, ids, n);
    return 1;
}

/* tok:decode(ids) -> text (upstream's decode, see dalle.h) */
static int l_tok_decode(lua_State *L)
{
    dalle_tokenizer *tok = check_tok(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 2);
    if (n > INT_MAX / 2)
        luaL_argerror(L, 2, "too many ids");
    int32_t *ids = scratch(L, (size_t)(n > 0 ? n : 1), sizeof *ids);
    read_ids(L, 2, 2, "ids", ids, (int)n);
    size_t len = 0;
    CHECK_STATUS(L, dalle_tokenizer_decode(tok, ids, (int)n, NULL, 0, &len));
    char *buf = scratch(L, len + 1, 1);
    CHECK_STATUS(L, dalle_tokenizer_decode(tok, ids, (int)n, buf, len + 1, &len));
    lua_pushlstring(L, buf, len);
    return 1;
}

/* tok:tokenize(text, context_length [, truncate]) and
 * tok:tokenize_clip(...) -> context_length ids, padded with 0 */
static int tok_tokenize(lua_State *L, int clip)
{
    lua_settop(L, 4);
    dalle_tokenizer *tok = check_tok(L, 1);
    const char *text = luaL_checkstring(L, 2);
    int len = (int)check_int_range(L, 3, 1, 1 << 16);
    int truncate = lua_toboolean(L, 4);
    int32_t *ids = scratch(L, (size_t)len, sizeof *ids);
    CHECK_STATUS(L, (clip ? dalle_tokenizer_tokenize_clip : dalle_tokenizer_tokenize)(
                        tok, text, ids, len, truncate));
    push_ids(L, ids, len);
    return 1;
}

static int l_tok_tokenize(lua_State *L) { return tok_tokenize(L, 0); }
static int l_tok_tokenize_clip(lua_State *L) { return tok_tokenize(L, 1); }

/* ------------------------------------------------------------------------ */
/* The module                                                               */
/* ------------------------------------------------------------------------ */

/* dalle.version() -> "1.0.0", version number (10000 major + 100 minor + patch) */
static int l_version(lua_State *L)
{
    lua_pushstring(L, dalle_version());
    lua_pushinteger(L, dalle_version_number());
    return 2;
}

/* dalle.strerror(status) -> "invalid argument", "DALLE_ERR_INVALID_ARGUMENT" */
static int l_strerror(lua_State *L)
{
    lua_Integer s = luaL_checkinteger(L, 1);
    int si = (s < INT_MIN || s > INT_MAX) ? INT_MIN : (int)s;
    lua_pushstring(L, dalle_strerror(si));
    lua_pushstring(L, status_name(si));
    return 2;
}

/* ------------------------------------------------------------------------ */
/* The synthetic world and its judge (dalle_synth_* of <dalle/train.h>)      */
/* ------------------------------------------------------------------------ */

typedef struct lsynth {
    dalle_synth *g;
} lsynth;

static const char *const split_names[] = {"train", "heldout", "any", NULL};

static dalle_synth *check_synth(lua_State *L, int arg)
{
    lsynth *s = luaL_checkudata(L, arg, SYNTH_MT);
    if (!s->g)
        luaL_error(L, "attempt to use a closed dalle synth");
    return s->g;
}

/* dalle.synth([seed [, {colors, shapes, max_objects, layouts, split}]]):
 * a generator of the world's items; split is "train" (default), "heldout"
 * or "any". */
static int l_synth_open(lua_State *L)
{
    static const char *const keys[] = {"colors", "shapes", "max_objects", "layouts", "split",
                                       NULL};
    lua_settop(L, 2);
    lua_Integer seed = luaL_optinteger(L, 1, 0);
    int has = opt_table(L, 2, keys);
    dalle_synth_params p = dalle_synth_default_params();
    p.colors = (int)opt_integer(L, 2, has, "colors", p.colors, INT_MIN, INT_MAX);
    p.shapes = (int)opt_integer(L, 2, has, "shapes", p.shapes, INT_MIN, INT_MAX);
    p.max_objects = (int)opt_integer(L, 2, has, "max_objects", p.max_objects, INT_MIN, INT_MAX);
    p.layouts = (int)opt_integer(L, 2, has, "layouts", p.layouts, INT_MIN, INT_MAX);
    if (has && lua_getfield(L, 2, "split") != LUA_TNIL) {
        int found = -1;
        if (lua_type(L, -1) == LUA_TSTRING)
            for (int i = 0; split_names[i] && found < 0; i++)
                if (!strcmp(lua_tostring(L, -1), split_names[i]))
                    found = i;
        if (found < 0)
            option_error(L, 2, "split", -1, "'train', 'heldout' or 'any'");
        p.split = (dalle_synth_split)found;
    }
    lua_settop(L, 2);
    lsynth *s = lua_newuserdatauv(L, sizeof *s, 0);
    s->g = NULL;
    luaL_setmetatable(L, SYNTH_MT);
    CHECK_STATUS(L, dalle_synth_create((uint64_t)seed, &p, &s->g));
    return 1;
}

static int l_synth_close(lua_State *L)
{
    lsynth *s = luaL_checkudata(L, 1, SYNTH_MT);
    dalle_synth_free(s->g);
    s->g = NULL;
    return 0;
}

static int l_synth_tostring(lua_State *L)
{
    lsynth *s = luaL_checkudata(L, 1, SYNTH_MT);
    dalle_synth_params p = dalle_synth_default_params();
    uint64_t seed = 0;
    if (s->g && dalle_synth_get_params(s->g, &p, &seed) == DALLE_OK)
        lua_pushfstring(L, "dalle.Synth(seed %I, %s, %d colours, %d shapes)",
                        (lua_Integer)seed, split_names[p.split], p.colors, p.shapes);
    else
        lua_pushliteral(L, "dalle.Synth(closed)");
    return 1;
}

static void set_name(lua_State *L, const char *key, const char *value)
{
    if (value) {
        lua_pushstring(L, value);
        lua_setfield(L, -2, key);
    }
}

/* Push a scene as a table: {objects = {{color, shape, size, position, cx,
 * cy, extent}, ...}, background, relation (two objects), says = {size =
 * true, ...}}. */
static void push_scene(lua_State *L, const dalle_synth_scene *s)
{
    lua_createtable(L, 0, 4);
    lua_createtable(L, s->n_objects, 0);
    for (int k = 0; k < s->n_objects && k < DALLE_SYNTH_MAX_OBJECTS; k++) {
        const dalle_synth_object *o = &s->objects[k];
        lua_createtable(L, 0, 7);
        set_name(L, "color", dalle_synth_color_name(o->color));
        set_name(L, "shape", dalle_synth_shape_name(o->shape));
        set_name(L, "size", o->size == DALLE_SYNTH_LARGE ? "large" : "small");
        set_name(L, "position", dalle_synth_position_name(o->position));
        lua_pushnumber(L, o->cx);
        lua_setfield(L, -2, "cx");
        lua_pushnumber(L, o->cy);
        lua_setfield(L, -2, "cy");
        lua_pushnumber(L, o->extent);
        lua_setfield(L, -2, "extent");
        lua_rawseti(L, -2, k + 1);
    }
    lua_setfield(L, -2, "objects");
    set_name(L, "background", dalle_synth_color_name(s->background));
    if (s->n_objects == 2)
        set_name(L, "relation", dalle_synth_relation_name(s->relation));
    lua_createtable(L, 0, 3);
    const struct {
        const char *name;
        unsigned bit;
    } says[] = {{"size", DALLE_SYNTH_SAYS_SIZE},
                {"position", DALLE_SYNTH_SAYS_POSITION},
                {"background", DALLE_SYNTH_SAYS_BACKGROUND}};
    for (int i = 0; i < 3; i++)
        if (s->says & says[i].bit) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, says[i].name);
        }
    lua_setfield(L, -2, "says");
}

/* synth:sample(index [, size = 64]) -> caption, image (1 x 3 x size x size) */
static int l_synth_sample(lua_State *L)
{
    dalle_synth *g = check_synth(L, 1);
    lua_Integer index = luaL_checkinteger(L, 2);
    int size = lua_isnoneornil(L, 3)
                   ? 64
                   : (int)check_int_range(L, 3, DALLE_SYNTH_MIN_SIZE, DALLE_SYNTH_MAX_SIZE);
    char caption[DALLE_SYNTH_CAPTION_CAP];
    limage *im = new_image(L, 1, size, size);
    CHECK_STATUS(L, dalle_synth_sample(g, (uint64_t)index, size, im->px, caption, sizeof caption,
                                       NULL));
    lua_pushstring(L, caption);
    lua_insert(L, -2);
    return 2;
}

/* synth:caption(index) -> the item's caption (no picture drawn) */
static int l_synth_caption(lua_State *L)
{
    dalle_synth *g = check_synth(L, 1);
    lua_Integer index = luaL_checkinteger(L, 2);
    char caption[DALLE_SYNTH_CAPTION_CAP];
    CHECK_STATUS(L, dalle_synth_sample(g, (uint64_t)index, 0, NULL, caption, sizeof caption,
                                       NULL));
    lua_pushstring(L, caption);
    return 1;
}

/* synth:scene(index) -> the item's scene table */
static int l_synth_scene(lua_State *L)
{
    dalle_synth *g = check_synth(L, 1);
    lua_Integer index = luaL_checkinteger(L, 2);
    dalle_synth_scene s = dalle_synth_default_scene();
    CHECK_STATUS(L, dalle_synth_sample(g, (uint64_t)index, 0, NULL, NULL, 0, &s));
    push_scene(L, &s);
    return 1;
}

/* synth:write_folder(dir, count [, {first, size, n_captions}]) */
static int l_synth_write_folder(lua_State *L)
{
    static const char *const keys[] = {"first", "size", "n_captions", NULL};
    dalle_synth *g = check_synth(L, 1);
    const char *dir = luaL_checkstring(L, 2);
    lua_Integer count = luaL_checkinteger(L, 3);
    int has = opt_table(L, 4, keys);
    lua_Integer first = opt_integer(L, 4, has, "first", 0, 0, LUA_MAXINTEGER);
    int size = (int)opt_integer(L, 4, has, "size", 64, INT_MIN, INT_MAX);
    int n = (int)opt_integer(L, 4, has, "n_captions", 1, INT_MIN, INT_MAX);
    CHECK_STATUS(L, dalle_synth_write_folder(g, dir, (uint64_t)first, count, size, n));
    return 0;
}

/* One picture of an image argument: its pixels and side. */
static const float *check_picture(lua_State *L, int arg, int *size)
{
    limage *im = check_image(L, arg);
    if (im->batch != 1 || im->height != im->width)
        luaL_argerror(L, arg, lua_pushfstring(L, "one square picture expected, got %d x 3 x %d "
                                              "x %d", im->batch, im->height, im->width));
    *size = im->height;
    return im->px;
}

/* dalle.judge(image, caption) -> {color, shape, position, size, background
 * (true / false; nil when the caption does not state it), asked, right,
 * passed, seen = scene} */
static int l_judge(lua_State *L)
{
    int size;
    const float *px = check_picture(L, 1, &size);
    const char *caption = luaL_checkstring(L, 2);
    dalle_synth_verdict v = dalle_synth_default_verdict();
    dalle_synth_scene seen = dalle_synth_default_scene();
    CHECK_STATUS(L, dalle_synth_judge(px, size, caption, &v, &seen));
    lua_createtable(L, 0, 9);
    const struct {
        const char *name;
        int value;
    } f[] = {{"color", v.color}, {"shape", v.shape}, {"position", v.position},
             {"size", v.size}, {"background", v.background}};
    for (int i = 0; i < 5; i++)
        if (f[i].value >= 0) {
            lua_pushboolean(L, f[i].value);
            lua_setfield(L, -2, f[i].name);
        }
    lua_pushinteger(L, v.asked);
    lua_setfield(L, -2, "asked");
    lua_pushinteger(L, v.right);
    lua_setfield(L, -2, "right");
    lua_pushboolean(L, v.asked > 0 && v.right == v.asked);
    lua_setfield(L, -2, "passed");
    push_scene(L, &seen);
    lua_setfield(L, -2, "seen");
    return 1;
}

/* dalle.read_scene(image [, max_objects = 2]) -> scene */
static int l_read_scene(lua_State *L)
{
    int size;
    const float *px = check_picture(L, 1, &size);
    int max_objects = (int)luaL_optinteger(L, 2, 2);
    dalle_synth_scene seen = dalle_synth_default_scene();
    CHECK_STATUS(L, dalle_synth_read(px, size, max_objects, &seen));
    push_scene(L, &seen);
    return 1;
}

/* dalle.parse_caption(caption) -> the scene it asks for */
static int l_parse_caption(lua_State *L)
{
    const char *caption = luaL_checkstring(L, 1);
    dalle_synth_scene s = dalle_synth_default_scene();
    CHECK_STATUS(L, dalle_synth_parse_caption(caption, &s));
    push_scene(L, &s);
    return 1;
}

/* A colour or shape name at `arg`: its index. */
static int check_word(lua_State *L, int arg, const char *(*name)(int), int n, const char *what)
{
    const char *w = luaL_checkstring(L, arg);
    for (int i = 0; i < n; i++)
        if (!strcmp(w, name(i)))
            return i;
    return luaL_argerror(L, arg, lua_pushfstring(L, "unknown %s '%s'", what, w));
}

/* dalle.is_heldout(color, shape, background) -> boolean */
static int l_is_heldout(lua_State *L)
{
    int c = check_word(L, 1, dalle_synth_color_name, DALLE_SYNTH_N_COLORS, "colour");
    int s = check_word(L, 2, dalle_synth_shape_name, DALLE_SYNTH_N_SHAPES, "shape");
    int b = check_word(L, 3, dalle_synth_color_name, DALLE_SYNTH_N_COLORS, "colour");
    int held = 0;
    CHECK_STATUS(L, dalle_synth_is_heldout(c, s, b, &held));
    lua_pushboolean(L, held);
    return 1;
}

/* Learnt merges held for dalle.learn_bpe until the collector frees them. */
typedef struct lmerges {
    dalle_bpe_merges *m;
} lmerges;

static int l_merges_gc(lua_State *L)
{
    lmerges *h = luaL_checkudata(L, 1, MERGES_MT);
    dalle_bpe_merges_free(h->m);
    h->m = NULL;
    return 0;
}

/* dalle.learn_bpe(captions [, {max_merges, min_count}]) -> the merges file
 * text, the number of merges, the vocabulary size */
static int l_learn_bpe(lua_State *L)
{
    static const char *const keys[] = {"max_merges", "min_count", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    int has = opt_table(L, 2, keys);
    dalle_bpe_learn_params p = dalle_bpe_learn_default_params();
    p.max_merges = (int)opt_integer(L, 2, has, "max_merges", p.max_merges, INT_MIN, INT_MAX);
    p.min_count = opt_integer(L, 2, has, "min_count", p.min_count, LUA_MININTEGER,
                              LUA_MAXINTEGER);
    lua_Integer n = luaL_len(L, 1);
    if (n < 1)
        luaL_argerror(L, 1, "a non-empty table of captions expected");
    const char **texts = scratch(L, (size_t)n, sizeof *texts);
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_geti(L, 1, i) != LUA_TSTRING)
            luaL_argerror(L, 1, lua_pushfstring(L, "captions[%I]: string expected, got %s", i,
                                                luaL_typename(L, -1)));
        texts[i - 1] = lua_tostring(L, -1); /* kept alive by the table */
        lua_pop(L, 1);
    }
    lmerges *holder = lua_newuserdatauv(L, sizeof *holder, 0); /* freed by its __gc */
    holder->m = NULL;
    luaL_setmetatable(L, MERGES_MT);
    CHECK_STATUS(L, dalle_bpe_learn(texts, (int64_t)n, &p, &holder->m));
    size_t len = 0;
    const char *text = dalle_bpe_merges_text(holder->m, &len);
    lua_pushlstring(L, text, len);
    lua_pushinteger(L, dalle_bpe_merges_count(holder->m));
    lua_pushinteger(L, dalle_bpe_merges_vocab_size(holder->m));
    return 3;
}

static const luaL_Reg model_methods[] = {
    {"shapes", l_model_shapes},
    {"bundle", l_model_bundle},
    {"tokenize", l_model_tokenize},
    {"sample", l_model_sample},
    {"generate_text", l_model_generate_text},
    {"logits", l_model_logits},
    {"decode", l_model_decode},
    {"encode", l_model_encode},
    {"close", l_model_close},
    {NULL, NULL},
};

static const luaL_Reg clip_methods[] = {
    {"shapes", l_clip_shapes},
    {"score", l_clip_score},
    {"score_masked", l_clip_score_masked},
    {"rank", l_clip_rank},
    {"encode_image", l_clip_encode_image},
    {"encode_text", l_clip_encode_text},
    {"logits_per_image", l_clip_logits_per_image},
    {"preprocess", l_clip_preprocess},
    {"close", l_clip_close},
    {NULL, NULL},
};

static const luaL_Reg tok_methods[] = {
    {"vocab_size", l_tok_vocab_size},
    {"encode", l_tok_encode},
    {"decode", l_tok_decode},
    {"tokenize", l_tok_tokenize},
    {"tokenize_clip", l_tok_tokenize_clip},
    {"close", l_tok_close},
    {NULL, NULL},
};

static const luaL_Reg image_methods[] = {
    {"size", l_image_size},
    {"pixel", l_image_pixel},
    {"set_pixel", l_image_set_pixel},
    {"get", l_image_get},
    {"bytes", l_image_bytes},
    {"save_png", l_image_save_png},
    {NULL, NULL},
};

static const luaL_Reg module_functions[] = {
    {"version", l_version},
    {"strerror", l_strerror},
    {"open", l_open},
    {"clip", l_clip_open},
    {"tokenizer", l_tok_open},
    {"bundle", l_bundle},
    {"image", l_image_new},
    {"read_image", l_read_image},
    {"concat", l_concat},
    {"save_png", l_save_png},
    {"synth", l_synth_open},
    {"judge", l_judge},
    {"read_scene", l_read_scene},
    {"parse_caption", l_parse_caption},
    {"is_heldout", l_is_heldout},
    {"learn_bpe", l_learn_bpe},
    {NULL, NULL},
};

static const luaL_Reg synth_methods[] = {
    {"sample", l_synth_sample},
    {"caption", l_synth_caption},
    {"scene", l_synth_scene},
    {"write_folder", l_synth_write_folder},
    {"close", l_synth_close},
    {NULL, NULL},
};

/* A metatable `name` with the given methods in __index, plus metamethods;
 * left on the stack. */
static void new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                      const luaL_Reg *meta)
{
    luaL_newmetatable(L, name);
    luaL_setfuncs(L, meta, 0);
    if (methods) {
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
    }
}

LUAMOD_API int luaopen_dalle(lua_State *L)
{
    luaL_checkversion(L);
    const luaL_Reg model_meta[] = {{"__gc", l_model_close},
                                   {"__close", l_model_close},
                                   {"__tostring", l_model_tostring},
                                   {NULL, NULL}};
    const luaL_Reg clip_meta[] = {{"__gc", l_clip_close},
                                  {"__close", l_clip_close},
                                  {"__tostring", l_clip_tostring},
                                  {NULL, NULL}};
    const luaL_Reg tok_meta[] = {{"__gc", l_tok_close},
                                 {"__close", l_tok_close},
                                 {"__tostring", l_tok_tostring},
                                 {NULL, NULL}};
    const luaL_Reg image_meta[] = {
        {"__len", l_image_len}, {"__tostring", l_image_tostring}, {NULL, NULL}};
    const luaL_Reg error_meta[] = {
        {"__tostring", error_tostring}, {"__concat", error_concat}, {NULL, NULL}};
    const luaL_Reg bundle_meta[] = {{"__gc", l_bundle_handle_gc}, {NULL, NULL}};
    const luaL_Reg synth_meta[] = {{"__gc", l_synth_close},
                                   {"__close", l_synth_close},
                                   {"__tostring", l_synth_tostring},
                                   {NULL, NULL}};
    const luaL_Reg merges_meta[] = {{"__gc", l_merges_gc}, {NULL, NULL}};

    luaL_newlib(L, module_functions);
    new_class(L, MODEL_MT, model_methods, model_meta);
    lua_setfield(L, -2, "Model");
    new_class(L, CLIP_MT, clip_methods, clip_meta);
    lua_setfield(L, -2, "Clip");
    new_class(L, TOKENIZER_MT, tok_methods, tok_meta);
    lua_setfield(L, -2, "Tokenizer");
    new_class(L, IMAGE_MT, image_methods, image_meta);
    lua_setfield(L, -2, "Image");
    new_class(L, ERROR_MT, NULL, error_meta);
    lua_setfield(L, -2, "Error");
    new_class(L, BUNDLE_MT, NULL, bundle_meta);
    lua_pop(L, 1);
    new_class(L, SYNTH_MT, synth_methods, synth_meta);
    lua_setfield(L, -2, "Synth");
    new_class(L, MERGES_MT, NULL, merges_meta);
    lua_pop(L, 1);

    /* dalle.status.IO == -3, ... (the dalle_status codes) */
    lua_createtable(L, 0, N_STATUS);
    for (int i = 0; i < N_STATUS; i++) {
        const char *nm = status_names[i];
        lua_pushinteger(L, -i);
        lua_setfield(L, -2, i == 0 ? "OK" : nm + strlen("DALLE_ERR_"));
    }
    lua_setfield(L, -2, "status");

    lua_pushstring(L, dalle_version());
    lua_setfield(L, -2, "_VERSION");
    return 1;
}
