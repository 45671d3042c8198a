/**
 * The package's root directory (where package.json and bin/ are): two levels
 * up from src/cli/ when run from source through tsx, three from the compiled
 * copy in dist/src/cli/ (tsconfig.build.json compiles from the repository
 * root because src/cli imports the SDKs in producer/, consumer/, client/).
 */
export const packageRoot: URL = new URL(import.meta.url.endsWith('.ts') ? '../../' : '../../../', import.meta.url)
