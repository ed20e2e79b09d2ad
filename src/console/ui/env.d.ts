/** Stylesheets are bundled by Bun's HTML build; imported for their effect only. */
declare module '*.css'
