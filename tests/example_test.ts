import assert from "node:assert/strict";
import { DENO, isRoot, netnsList, ROOT, skipUnless } from "./helpers.ts";

Deno.test("the documented scripting example", async (t) => {
  await t.step("runs and reports every frame reflected", async () => {
    if (skipUnless(isRoot, "the example builds a namespace lab and needs root")) return;
    const out = await new Deno.Command(DENO, {
      args: ["run", "-A", "--unstable-ffi", "--quiet", `${ROOT}/examples/reflect_and_probe.ts`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.equal(r.sent, 5000);
    assert.equal(r.received, 5000);
    assert.equal(r.reflected, 5000);
    assert.equal(r.badRewrite, 0);
    assert.equal(r.mode, "packet");
    assert.ok(!(await netnsList()).some((n) => n.startsWith("fpx-")));
  });
});
