// What both page drivers (softphone.mjs for Chromium, firefox_softphone.mjs) read first: their
// options, as JSON on stdin (they hold the call token, which a command line would show to
// every process on the machine), and a redactor that keeps the token out of all they print.
const readStdin = async () => {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
};

export async function readOptions() {
  const opts = JSON.parse(process.argv[2] ?? (await readStdin()));
  const token = new URL(opts.url).searchParams.get("token") || "";
  // no error text, page console line or message carries the token
  const redact = (text) => (token ? String(text).split(token).join("<token>") : String(text));
  return { opts, redact };
}
