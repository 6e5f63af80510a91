-- Generate images from a caption with the Lua module, optionally reranked
-- by CLIP (best first), and write them as one PNG grid.
--
--   LUA_CPATH='build/bindings/lua/?.so;;' lua5.4 examples/generate.lua \
--       MODEL.dalle "a green triangle" [OUT.png] [N] [CLIP.dalle]
local dalle = require "dalle"

local model_path, caption = arg[1], arg[2]
local out, n, clip_path = arg[3] or "out.png", tonumber(arg[4] or "4"), arg[5]
if not model_path or not caption then
  io.stderr:write("usage: lua5.4 generate.lua MODEL.dalle CAPTION [OUT.png] [N] [CLIP.dalle]\n")
  os.exit(2)
end

local ok, err = pcall(function()
  local model <close> = dalle.open(model_path)           -- threads: all cores
  local ids = model:sample(caption, {                     -- tokenized with the model's BPE
    seed = 42, n = n, filter_thres = 0.9, temperature = 1.0,
    progress = function(done, total)                      -- return false to stop
      if done == total or done % math.max(total // 10, 1) == 0 then
        io.stderr:write(string.format("\r%d/%d image tokens", done, total))
      end
    end,
  })
  io.stderr:write("\n")
  local images = model:decode(ids)                        -- dalle.Image, n x 3 x H x W

  if clip_path then                                       -- rerank: best first
    local clip <close> = dalle.clip(clip_path)
    local tok <close> = dalle.tokenizer(clip_path)
    local text = tok:tokenize(caption, clip:shapes().text_seq_len, true)
    local size = clip:shapes().image_size
    if select(2, images:size()) == size then
      local scores, order = clip:rank(text, images)
      local ranked = {}
      for i, k in ipairs(order) do
        ranked[i] = images:get(k)
        print(string.format("image %d: CLIP score %.4f", k, scores[k]))
      end
      images = dalle.concat(table.unpack(ranked))
    end
  end

  dalle.save_png(out, images)                             -- a grid when n > 1
  print("wrote " .. out)
end)
if not ok then
  io.stderr:write("generate.lua: " .. tostring(err) .. "\n")  -- the library's message
  os.exit(1)
end
