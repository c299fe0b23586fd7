/**
 * fastpath's run-time directory: interface locks and lab owner records (Linux; the library writes them
 * there too, zig/src/sys/runlock.zig) and the stats sockets (/var/run/fastpath on macOS).
 */
export const RUN_DIR = Deno.build.os === "darwin" ? "/var/run/fastpath" : "/run/fastpath";
