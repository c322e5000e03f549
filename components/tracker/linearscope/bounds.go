package linearscope

import (
	"encoding/json"
	"strconv"

	"github.com/vektah/gqlparser/v2/ast"
)

// checkVariablesSize measures the variables as their JSON encoding would be
// (escapes aside), stopping as soon as the bound is passed, so a huge value
// costs no more than the bound to refuse. Values of types JSON decoding does
// not produce are refused: variables come from a JSON argument.
func checkVariablesSize(variables map[string]any) error {
	left := MaxVariablesBytes
	if err := sizeOf(variables, &left, 0); err != nil {
		return err
	}
	return nil
}

func sizeOf(v any, left *int, depth int) *Refusal {
	if depth > maxVariableNesting {
		return refuse(RuleVariablesInvalid, "", "variables nest deeper than %d", maxVariableNesting)
	}
	n := 0
	switch x := v.(type) {
	case nil:
		n = 4
	case bool:
		n = 5
	case string:
		n = len(x) + 2
	case float64:
		n = len(strconv.FormatFloat(x, 'g', -1, 64))
	case json.Number:
		n = len(x)
	case int:
		n = len(strconv.Itoa(x))
	case int64:
		n = len(strconv.FormatInt(x, 10))
	case []any:
		n = 2
		for _, e := range x {
			if r := charge(left, n+1); r != nil {
				return r
			}
			n = 0
			if r := sizeOf(e, left, depth+1); r != nil {
				return r
			}
		}
	case map[string]any:
		n = 2
		for k, e := range x {
			if r := charge(left, n+len(k)+4); r != nil {
				return r
			}
			n = 0
			if r := sizeOf(e, left, depth+1); r != nil {
				return r
			}
		}
	default:
		return refuse(RuleVariablesInvalid, "", "a variable holds a %T, which JSON does not produce", v)
	}
	return charge(left, n)
}

func charge(left *int, n int) *Refusal {
	*left -= n
	if *left < 0 {
		return refuse(RuleVariablesTooLarge, "", "variables are over %d bytes of JSON", MaxVariablesBytes)
	}
	return nil
}

// budget walks selection sets with fragment spreads expanded, counting every
// selection visited against MaxSelections and the nesting of fields against
// MaxDepth. Because every step is charged, the walk ends within the budget
// even on a spread cycle or fragments that spread each other many times over;
// it runs before the validator, whose rules (overlapping fields above all)
// grow faster than linearly with the selections.
type budget struct {
	fragments map[string]*ast.FragmentDefinition
	left      int
}

func newBudget(doc *ast.QueryDocument) *budget {
	b := &budget{fragments: make(map[string]*ast.FragmentDefinition, len(doc.Fragments)), left: MaxSelections}
	for _, f := range doc.Fragments {
		if _, dup := b.fragments[f.Name]; !dup {
			b.fragments[f.Name] = f
		}
	}
	return b
}

// document charges every operation (spreads expanded) and every fragment
// definition (the validator visits each once on its own, used or not).
func (b *budget) document(doc *ast.QueryDocument) *Refusal {
	for _, op := range doc.Operations {
		if r := b.walk(op.SelectionSet, 0); r != nil {
			return r
		}
	}
	for _, f := range doc.Fragments {
		if r := b.walk(f.SelectionSet, 0); r != nil {
			return r
		}
	}
	return nil
}

func (b *budget) walk(set ast.SelectionSet, depth int) *Refusal {
	for _, sel := range set {
		b.left--
		if b.left < 0 {
			return refuse(RuleTooManySelections, "", "the document selects more than %d fields (fragments expanded)", MaxSelections)
		}
		var r *Refusal
		switch s := sel.(type) {
		case *ast.Field:
			if depth+1 > MaxDepth {
				return refuse(RuleTooDeep, "", "fields nest deeper than %d", MaxDepth)
			}
			r = b.walk(s.SelectionSet, depth+1)
		case *ast.InlineFragment:
			r = b.walk(s.SelectionSet, depth)
		case *ast.FragmentSpread:
			if f := b.fragments[s.Name]; f != nil {
				r = b.walk(f.SelectionSet, depth)
			}
		}
		if r != nil {
			return r
		}
	}
	return nil
}
