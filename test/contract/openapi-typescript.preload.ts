/**
 * Preloaded (`bun --preload`) when test/contract/openapi.test.ts runs `openapi-typescript`: that
 * generator builds its output with the TypeScript 5 compiler API, which the project's own
 * TypeScript 7 (the native compiler) does not have. Its `import ts from 'typescript'` is pointed
 * at the `typescript-5` dev dependency instead.
 */
import { plugin } from 'bun'

const typescript5 = Bun.resolveSync('typescript-5', import.meta.dir)

plugin({
  name: 'openapi-typescript on TypeScript 5',
  setup(build) {
    build.onLoad({ filter: /[\\/]openapi-typescript[\\/]dist[\\/].*\.mjs$/ }, async (args) => ({
      contents: (await Bun.file(args.path).text()).replaceAll("from 'typescript'", `from ${JSON.stringify(typescript5)}`),
      loader: 'js',
    }))
  },
})
