// Where a run's web files are, from the page's ?run= parameter.

const HUB = "https://huggingface.co";
const HUB_RUN = /^([\w.-]+)\/([\w.-]+)(?:@([\w./-]+))?$/;

/**
 * The address of a run's web folder, ending in "/": ?run=owner/name@revision is a run published on the
 * Hugging Face Hub (its web/ folder; without @revision, its main branch); ?run=folder/ (ending in "/")
 * is a folder of the page's own site, or any address. No ?run= gives null; anything else throws.
 */
export function runAddress(run, page = "http://localhost/") {
  if (!run) return null;
  if (run.endsWith("/")) return new URL(run, page).href;
  const hub = HUB_RUN.exec(run);
  if (!hub || hub[1] === ".." || hub[2] === "..") {
    throw new Error(`?run=${run} names no run. Write ?run=owner/name@revision for a run published on the ` +
      "Hugging Face Hub, or ?run=folder/ for a folder of this site.");
  }
  const [, owner, name, revision = "main"] = hub;
  return `${HUB}/${owner}/${name}/resolve/${encodeURIComponent(revision)}/web/`;
}
