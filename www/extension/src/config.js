// How this copy of the extension was built. scripts/build-extension.sh --no-model rewrites
// the line below to `false` in the build: the model pack is then not among the extension's
// files (model/), and the user gives its URL under "Model".
export const PACKAGED_MODEL = true;
