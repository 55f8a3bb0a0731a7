// The request the page just sent, as a curl command to paste into a shell (the key stays a variable).

function shellQuote(text) {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

export function curlCommand(path, body, { withKey }) {
  const lines = [`curl -s ${shellQuote(location.origin + path)}`, `  -H 'Content-Type: application/json'`];
  if (withKey) lines.push(`  -H "Authorization: Bearer $WINNOW_API_KEY"`);
  lines.push(`  -d ${shellQuote(JSON.stringify(body))}`);
  return lines.join(" \\\n");
}
