-- LuaRocks spec of the Lua module "dalle" (bindings/lua/dalle.c). It builds
-- the module against an installed libdalle (headers + libdalle.so.1), found
-- through pkg-config; from the repository root:
--
--   luarocks --lua-version 5.4 make bindings/lua/dalle-1.0-1.rockspec \
--       DALLE_INCDIR="$(pkg-config --variable=includedir dalle)" \
--       DALLE_LIBDIR="$(pkg-config --variable=libdir dalle)"
--
-- (or DALLE_DIR="$(pkg-config --variable=prefix dalle)"; without any of
-- them LuaRocks looks in its usual system folders).
rockspec_format = "3.0"
package = "dalle"
version = "1.0-1"
source = {
  url = "git+https://example.invalid/libdalle.git",
  tag = "v1.0.0",
}
description = {
  summary = "DALL-E style text-to-image generation (libdalle) from Lua",
  detailed = [[
Open converted DALLE-pytorch / OpenAI dVAE / VQGAN / CLIP bundles, tokenize
captions, sample image tokens, decode them to pixels, write PNGs and rank
images with CLIP. Handles are garbage-collected and to-be-closed.]],
  homepage = "https://example.invalid/libdalle",
  license = "MIT",
  labels = { "image", "machine-learning" },
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  DALLE = {
    header = "dalle/dalle.h",
    library = "dalle",
  },
}
build = {
  type = "builtin",
  modules = {
    dalle = {
      sources = { "bindings/lua/dalle.c" },
      defines = { "_GNU_SOURCE" },
      incdirs = { "$(DALLE_INCDIR)" },
      libdirs = { "$(DALLE_LIBDIR)" },
      libraries = { "dalle" },
    },
  },
}
