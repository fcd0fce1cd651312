// "Copy as curl / Python": the request that makes a video again, as a person would type it.

import { hasKey } from "./api.js";

function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

function pythonLiteral(value) {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (Array.isArray(value)) return `[${value.map(pythonLiteral).join(", ")}]`;
  if (typeof value === "object") {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pythonLiteral(v)}`).join(", ")}}`;
  }
  return JSON.stringify(value); // strings and numbers: JSON spells them as Python does
}

/** A curl command line for POST /v1/videos with `body`. */
export function curlCommand(body, origin = location.origin) {
  const lines = [`curl -sS ${origin}/v1/videos`, `-H 'Content-Type: application/json'`];
  if (hasKey()) lines.push(`-H "Authorization: Bearer $WANSERVE_API_KEY"`);
  lines.push(`-d ${shellQuote(JSON.stringify(body))}`);
  return lines.join(" \\\n  ");
}

/** The same request with the openai SDK (wanserve's fields beyond OpenAI's in extra_body). */
export function pythonCode(body, origin = location.origin) {
  const { model, prompt, size, ...extra } = body;
  const key = hasKey() ? 'os.environ["WANSERVE_API_KEY"]' : '"unused"';
  const args = [`model=${pythonLiteral(model)}`, `prompt=${pythonLiteral(prompt)}`];
  if (size) args.push(`size=${pythonLiteral(size)}`);
  if (Object.keys(extra).length) args.push(`extra_body=${pythonLiteral(extra)}`);
  return [
    ...(hasKey() ? ["import os", ""] : []),
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url=${pythonLiteral(`${origin}/v1`)}, api_key=${key})`,
    `video = client.videos.create_and_poll(\n    ${args.join(",\n    ")},\n)`,
    'client.videos.download_content(video.id).write_to_file("video.mp4")',
  ].join("\n");
}
