{#-
  The model's features: the columns of fct_transaction_features whose meta role is `feature`, in
  the mart's order, read from the project graph, so a feature added to the mart is monitored
  without being listed again. Empty at parse time (the graph is not loaded yet). Var
  `monitored_features` overrides the list (unit tests, which have no graph, set it).
-#}
{% macro model_feature_columns() %}
    {%- if var('monitored_features', none) is not none -%}{{ return(var('monitored_features')) }}{%- endif -%}
    {%- if not execute -%}{{ return([]) }}{%- endif -%}
    {%- set marts = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')
                                         | selectattr('name', 'equalto', 'fct_transaction_features') | list -%}
    {%- set features = [] -%}
    {%- for column in marts[0].columns.values() if (column.meta or {}).get('role') == 'feature' -%}
        {%- do features.append(column.name) -%}
    {%- endfor -%}
    {{ return(features) }}
{% endmacro %}
