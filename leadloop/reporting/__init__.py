"""leadloop's report: gather the numbers, plan the funnel, draw the charts, write the page."""
