/** Stylesheets imported as their text (`with { type: "text" }`; see assets.ts). */
declare module "*.css" {
  const text: string;
  export default text;
}
